// Helpers of tpm.cc: the shared ESYS context, its lock, ESYS memory ownership, marshaling, and the
// fixed structures (PCR selection, AK template) the Tpm operations pass to the TPM.
#pragma once

#include <napi.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include <memory>
#include <mutex>
#include <vector>

#include "errors.h"

namespace am {
namespace tpm {

using Bytes = std::vector<uint8_t>;

// TpmCore owns the TCTI and ESYS contexts; shared by the JS object and its in-flight workers, so it
// outlives both. Finalized by close() or, failing that, by the last owner's destructor.
struct TpmCore {
  std::mutex mu;
  TSS2_TCTI_CONTEXT* tcti = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  ~TpmCore() { Finalize(); }
  void Finalize() {
    if (esys) Esys_Finalize(&esys);
    if (tcti) Tss2_TctiLdr_Finalize(&tcti);
  }
};
using CoreRef = std::shared_ptr<TpmCore>;

// Locked holds the core's mutex for one operation; it fails if the Tpm was closed.
class Locked {
 public:
  Locked(TpmCore& core, const char* op) : lock_(core.mu), esys(core.esys) {
    if (!esys) throw PlainFailure(op, "the Tpm is closed");
  }

 private:
  std::unique_lock<std::mutex> lock_;

 public:
  ESYS_CONTEXT* esys;
};

template <typename T>
struct EsysFree {
  void operator()(T* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree<T>>;

template <typename T>
Bytes Marshal(const char* call, TSS2_RC (*fn)(const T*, uint8_t*, size_t, size_t*), const T& v) {
  Bytes buf(sizeof(T) + 64);
  size_t off = 0;
  CheckTss(call, fn(&v, buf.data(), buf.size(), &off));
  buf.resize(off);
  return buf;
}

inline Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const Bytes& b) {
  return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size());
}

// Sha256Selection selects `indices` in the SHA-256 bank (the only bank this addon quotes or reads).
inline TPML_PCR_SELECTION Sha256Selection(const std::vector<uint32_t>& indices) {
  TPML_PCR_SELECTION s{};
  s.count = 1;
  s.pcrSelections[0].hash = TPM2_ALG_SHA256;
  s.pcrSelections[0].sizeofSelect = 3;
  for (uint32_t i : indices) s.pcrSelections[0].pcrSelect[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  return s;
}

// AkTemplate is a restricted signing key (an attestation key): fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, restricted, sign; SHA-256 name; ECDSA-P256-SHA256 or
// RSASSA-2048-SHA256. Created as a primary, the same template yields the same key every boot.
inline TPM2B_PUBLIC AkTemplate(bool rsa) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  if (rsa) {
    p.type = TPM2_ALG_RSA;
    p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
    p.parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.rsaDetail.keyBits = 2048;
    p.parameters.rsaDetail.exponent = 0;  // the default, 65537
  } else {
    p.type = TPM2_ALG_ECC;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  }
  return t;
}

// NvList lists the defined NV indices (TPM2_CAP_HANDLES from TPM2_NV_INDEX_FIRST). tpm-nv.cc.
std::vector<uint32_t> NvList(ESYS_CONTEXT* esys);

// NvRead reads the whole of an NV index with owner authorization (empty password), in chunks of
// TPM2_PT_NV_BUFFER_MAX. tpm-nv.cc.
Bytes NvRead(ESYS_CONTEXT* esys, uint32_t index);

// NvDefineWrite defines an ordinary NV index of data.size() bytes in the owner hierarchy (empty
// authorization) and writes data in chunks. Fails (TPM_RC_NV_DEFINED) if the index exists. tpm-nv.cc.
void NvDefineWrite(ESYS_CONTEXT* esys, uint32_t index, const Bytes& data);

// TemplateFromBytes unmarshals a TPMT_PUBLIC (no size prefix), refusing trailing bytes. tpm-nv.cc.
TPM2B_PUBLIC TemplateFromBytes(const Bytes& tmpl);

}  // namespace tpm
}  // namespace am
