// attested-mesh native addon: TPM 2.0 (tpm2-tss ESAPI) and SEV-SNP guest requests. The API is
// declared in src/attestation/native-types.ts and loaded by src/attestation/native.ts.
#include <napi.h>

#include "snp.h"
#include "tpm-seal.h"
#include "tpm.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  am::InitTpm(env, exports);
  am::InitTpmSeal(env, exports);
  am::InitSnp(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(attested_mesh_native, Init)
