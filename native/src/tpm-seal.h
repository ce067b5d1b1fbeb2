// Sealing small secrets to a TPM's PCRs (a keyedhash object under the storage primary key whose
// authPolicy is a PolicyPCR digest). See tpm-seal.cc.
#pragma once

#include <napi.h>

namespace am {

// InitTpmSeal adds `tpmSealPcrs(tpm, pcrs, data)` and `tpmUnsealPcrs(tpm, public, private, pcrs)` to exports.
void InitTpmSeal(Napi::Env env, Napi::Object exports);

}  // namespace am
