// TPM 2.0 access through tpm2-tss ESAPI over a TCTI. See tpm.cc.
#pragma once

#include <napi.h>

#include <memory>

namespace am {

namespace tpm {
struct TpmCore;
}

// TpmCoreArg returns the ESYS core of the Tpm object passed as argument i (for the module functions
// of sibling files, e.g. tpm-seal.cc); a non-Tpm argument throws a TypeError naming `name`.
std::shared_ptr<tpm::TpmCore> TpmCoreArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// InitTpm adds `Tpm` (class; instances come only from openTpm) and `openTpm(tcti)` to exports.
void InitTpm(Napi::Env env, Napi::Object exports);

}  // namespace am
