// Failures of native calls: captured on a worker thread as a plain C++ value, turned into a JS Error
// on the main thread. Every message names the call and its return code (TSS rc in hex with
// Tss2_RC_Decode's text, or errno with strerror).
#pragma once

#include <napi.h>
#include <tss2/tss2_common.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace am {

// Failure is thrown (as a C++ exception) from worker-thread code and rejects the operation's promise.
struct Failure {
  std::string message;
  std::string call;
  bool hasRc = false;
  uint32_t rc = 0;
  int errnum = 0;
  // numbers are extra numeric properties set on the JS Error (fwError, vmmError, certsLength, ...).
  std::vector<std::pair<std::string, double>> numbers;
};

// TssFailure describes a failed TSS call: "<call> failed: rc 0x000001c4 (<decoded>)".
Failure TssFailure(const std::string& call, TSS2_RC rc);

// CheckTss throws TssFailure(call, rc) when rc is not TSS2_RC_SUCCESS.
void CheckTss(const char* call, TSS2_RC rc);

// ErrnoFailure describes a failed system call: "<call> failed: errno 2 (No such file or directory)<detail>".
Failure ErrnoFailure(const std::string& call, int errnum, const std::string& detail = "");

// PlainFailure describes a failure that has neither an rc nor an errno (a closed Tpm, a bad response).
Failure PlainFailure(const std::string& call, const std::string& what);

// ToJsError builds the JS Error: message, plus properties call, rc (number), errno, code ("ENOENT"…).
Napi::Error ToJsError(Napi::Env env, const Failure& f);

// Hex formats v as 0x followed by `digits` lower-case hex digits.
std::string Hex(uint64_t v, int digits = 8);

}  // namespace am
