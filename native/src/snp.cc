// SEV-SNP attestation reports through the sev-guest driver's ioctls (Linux uapi <linux/sev-guest.h>).
// The firmware's MSG_REPORT_RSP is: status (u32), report_size (u32), 24 reserved bytes, report.
// Everything beyond issuing the request and checking its status (report layout, certificate table)
// is read in TypeScript.
#include "snp.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if __has_include(<linux/sev-guest.h>)
#include <linux/sev-guest.h>
#else
// From the Linux uapi header (GPL-2.0 WITH Linux-syscall-note), for systems without it.
#include <linux/ioctl.h>
#include <linux/types.h>
struct snp_report_req {
  __u8 user_data[64];
  __u32 vmpl;
  __u8 rsvd[28];
};
struct snp_report_resp {
  __u8 data[4000];
};
struct snp_guest_request_ioctl {
  __u8 msg_version;
  __u64 req_data;
  __u64 resp_data;
  union {
    __u64 exitinfo2;
    struct {
      __u32 fw_error;
      __u32 vmm_error;
    };
  };
};
struct snp_ext_report_req {
  struct snp_report_req data;
  __u64 certs_address;
  __u32 certs_len;
};
#define SNP_GUEST_REQ_IOC_TYPE 'S'
#define SNP_GET_REPORT _IOWR(SNP_GUEST_REQ_IOC_TYPE, 0x0, struct snp_guest_request_ioctl)
#define SNP_GET_EXT_REPORT _IOWR(SNP_GUEST_REQ_IOC_TYPE, 0x2, struct snp_guest_request_ioctl)
#endif

#include "args.h"
#include "errors.h"
#include "worker.h"

namespace am {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr size_t kRspHeader = 0x20;
constexpr size_t kPage = 4096;

class Fd {
 public:
  explicit Fd(const std::string& path) : fd_(open(path.c_str(), O_RDWR | O_CLOEXEC)) {
    if (fd_ < 0) throw ErrnoFailure("open " + path, errno);
  }
  ~Fd() { close(fd_); }
  int get() const { return fd_; }

 private:
  int fd_;
};

uint32_t Le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }

// Request issues one guest request ioctl and returns the report from the response.
Bytes Request(const std::string& device, unsigned long op, const char* opName, void* req) {
  Fd fd(device);
  snp_report_resp resp{};
  snp_guest_request_ioctl g{};
  g.msg_version = 1;
  g.req_data = reinterpret_cast<uintptr_t>(req);
  g.resp_data = reinterpret_cast<uintptr_t>(&resp);
  if (ioctl(fd.get(), op, &g) < 0) {
    int e = errno;
    Failure f = ErrnoFailure(std::string("ioctl ") + opName + " on " + device, e,
                             ", fw_error " + Hex(g.fw_error) + ", vmm_error " + Hex(g.vmm_error));
    f.numbers.emplace_back("fwError", g.fw_error);
    f.numbers.emplace_back("vmmError", g.vmm_error);
    throw f;
  }
  uint32_t status = Le32(resp.data), size = Le32(resp.data + 4);
  if (status != 0) {
    Failure f = PlainFailure(opName, "firmware status " + Hex(status));
    f.numbers.emplace_back("status", status);
    throw f;
  }
  if (size > sizeof(resp.data) - kRspHeader)
    throw PlainFailure(opName, "report_size " + std::to_string(size) + " exceeds the response buffer");
  return Bytes(resp.data + kRspHeader, resp.data + kRspHeader + size);
}

snp_report_req ReportReq(const Bytes& reportData, uint32_t vmpl) {
  snp_report_req r{};
  std::memcpy(r.user_data, reportData.data(), sizeof(r.user_data));
  r.vmpl = vmpl;
  return r;
}

// snpGetReport(reportData: 64 bytes, vmpl, device) -> Promise<Buffer> (the ATTESTATION_REPORT)
Napi::Value GetReport(const Napi::CallbackInfo& info) {
  Bytes reportData = ArgBytes(info, 0, "reportData", 64, 64);
  uint32_t vmpl = ArgU32(info, 1, "vmpl", 3);
  std::string device = ArgString(info, 2, "device");
  return RunAsync<Bytes>(
      info.Env(), "snpGetReport",
      [reportData, vmpl, device]() {
        snp_report_req req = ReportReq(reportData, vmpl);
        return Request(device, SNP_GET_REPORT, "SNP_GET_REPORT", &req);
      },
      [](Napi::Env env, Bytes& b) -> Napi::Value { return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size()); });
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// snpGetExtReport(reportData, vmpl, device, certsLength) -> Promise<{report, certs}>: certs is the
// host's certificate table (GHCB spec), all zeros if the host supplies none. If certsLength is too
// small the error carries vmmError 1 and certsLength = the length the host needs.
Napi::Value GetExtReport(const Napi::CallbackInfo& info) {
  Bytes reportData = ArgBytes(info, 0, "reportData", 64, 64);
  uint32_t vmpl = ArgU32(info, 1, "vmpl", 3);
  std::string device = ArgString(info, 2, "device");
  uint32_t certsLen = ArgU32(info, 3, "certsLength", 64 * 1024 * 1024);
  if (certsLen == 0 || certsLen % kPage != 0)
    throw Napi::TypeError::New(info.Env(), "certsLength must be a positive multiple of 4096");
  struct R {
    Bytes report, certs;
  };
  return RunAsync<R>(
      info.Env(), "snpGetExtReport",
      [reportData, vmpl, device, certsLen]() {
        void* raw = nullptr;
        if (posix_memalign(&raw, kPage, certsLen) != 0) throw PlainFailure("snpGetExtReport", "out of memory");
        std::unique_ptr<void, FreeDeleter> certs(raw);
        std::memset(raw, 0, certsLen);
        snp_ext_report_req req{};
        req.data = ReportReq(reportData, vmpl);
        req.certs_address = reinterpret_cast<uintptr_t>(raw);
        req.certs_len = certsLen;
        R r;
        try {
          r.report = Request(device, SNP_GET_EXT_REPORT, "SNP_GET_EXT_REPORT", &req);
        } catch (Failure& f) {
          if (req.certs_len != certsLen) f.numbers.emplace_back("certsLength", req.certs_len);
          throw;
        }
        auto* p = static_cast<uint8_t*>(raw);
        r.certs.assign(p, p + certsLen);
        return r;
      },
      [](Napi::Env env, R& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("report", Napi::Buffer<uint8_t>::Copy(env, r.report.data(), r.report.size()));
        o.Set("certs", Napi::Buffer<uint8_t>::Copy(env, r.certs.data(), r.certs.size()));
        return o;
      });
}

}  // namespace

void InitSnp(Napi::Env env, Napi::Object exports) {
  exports.Set("snpGetReport", Napi::Function::New(env, GetReport, "snpGetReport"));
  exports.Set("snpGetExtReport", Napi::Function::New(env, GetExtReport, "snpGetExtReport"));
}

}  // namespace am
