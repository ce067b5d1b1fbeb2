// AMD SEV-SNP guest requests through /dev/sev-guest. See snp.cc.
#pragma once

#include <napi.h>

namespace am {

// InitSnp adds `snpGetReport` and `snpGetExtReport` to exports.
void InitSnp(Napi::Env env, Napi::Object exports);

}  // namespace am
