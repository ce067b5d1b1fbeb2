// TPM 2.0 access through tpm2-tss ESAPI over a TCTI. See tpm.cc.
#pragma once

#include <napi.h>

namespace am {

// InitTpm adds `Tpm` (class; instances come only from openTpm) and `openTpm(tcti)` to exports.
void InitTpm(Napi::Env env, Napi::Object exports);

}  // namespace am
