#include "errors.h"

#include <tss2/tss2_rc.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace am {

std::string Hex(uint64_t v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(v));
  return buf;
}

Failure TssFailure(const std::string& call, TSS2_RC rc) {
  Failure f;
  f.call = call;
  f.hasRc = true;
  f.rc = rc;
  const char* text = Tss2_RC_Decode(rc);
  f.message = call + " failed: rc " + Hex(rc) + " (" + (text ? text : "unknown") + ")";
  return f;
}

void CheckTss(const char* call, TSS2_RC rc) {
  if (rc != TSS2_RC_SUCCESS) throw TssFailure(call, rc);
}

static const char* ErrnoName(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case EBUSY: return "EBUSY";
    case ENOTTY: return "ENOTTY";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    default: return nullptr;
  }
}

Failure ErrnoFailure(const std::string& call, int errnum, const std::string& detail) {
  Failure f;
  f.call = call;
  f.errnum = errnum;
  char buf[256];
  // GNU strerror_r returns the message pointer (which may or may not be buf).
  const char* text = strerror_r(errnum, buf, sizeof buf);
  f.message = call + " failed: errno " + std::to_string(errnum) + " (" + text + ")" + detail;
  return f;
}

Failure PlainFailure(const std::string& call, const std::string& what) {
  Failure f;
  f.call = call;
  f.message = call + ": " + what;
  return f;
}

Napi::Error ToJsError(Napi::Env env, const Failure& f) {
  Napi::Error err = Napi::Error::New(env, f.message);
  Napi::Object o = err.Value();
  o.Set("call", Napi::String::New(env, f.call));
  if (f.hasRc) o.Set("rc", Napi::Number::New(env, f.rc));
  if (f.errnum != 0) {
    o.Set("errno", Napi::Number::New(env, f.errnum));
    if (const char* name = ErrnoName(f.errnum)) o.Set("code", Napi::String::New(env, name));
  }
  for (const auto& [name, value] : f.numbers) o.Set(name, Napi::Number::New(env, value));
  return err;
}

}  // namespace am
