// NV index and template operations of the Tpm (declared in tpm-core.h): the mechanics of reading,
// defining and writing NV indices in chunks of the TPM's NV buffer, listing defined indices, and
// CreatePrimary from a caller's TPMT_PUBLIC. Called with the core's lock held (tpm.cc's workers).
#include <algorithm>
#include <cstring>

#include "tpm-core.h"

namespace am {
namespace tpm {

namespace {

// NvBufferMax is TPM2_PT_NV_BUFFER_MAX: the most bytes one NV_Read or NV_Write may carry.
uint32_t NvBufferMax(ESYS_CONTEXT* esys) {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* cap = nullptr;
  TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                                  TPM2_PT_NV_BUFFER_MAX, 1, &more, &cap);
  EsysPtr<TPMS_CAPABILITY_DATA> owned(cap);
  CheckTss("Esys_GetCapability(TPM2_PT_NV_BUFFER_MAX)", rc);
  uint32_t max = 0;
  const TPML_TAGGED_TPM_PROPERTY& props = cap->data.tpmProperties;
  if (props.count >= 1 && props.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX) max = props.tpmProperty[0].value;
  // A TPM that does not report it still handles the TPM2B_MAX_NV_BUFFER size of the TSS.
  if (max == 0 || max > sizeof(TPM2B_MAX_NV_BUFFER::buffer)) max = sizeof(TPM2B_MAX_NV_BUFFER::buffer);
  return max;
}

// NvHandle returns the ESYS handle of an NV index (NV_ReadPublic under the hood) and its data size.
ESYS_TR NvHandle(ESYS_CONTEXT* esys, uint32_t index, uint16_t* dataSize) {
  ESYS_TR tr = ESYS_TR_NONE;
  CheckTss("Esys_TR_FromTPMPublic", Esys_TR_FromTPMPublic(esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr));
  TPM2B_NV_PUBLIC* pub = nullptr;
  TSS2_RC rc = Esys_NV_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, nullptr);
  EsysPtr<TPM2B_NV_PUBLIC> owned(pub);
  CheckTss("Esys_NV_ReadPublic", rc);
  *dataSize = pub->nvPublic.dataSize;
  return tr;
}

}  // namespace

std::vector<uint32_t> NvList(ESYS_CONTEXT* esys) {
  std::vector<uint32_t> out;
  TPM2_HANDLE next = TPM2_NV_INDEX_FIRST;
  for (int round = 0; round < 64; round++) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* cap = nullptr;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, next,
                                    TPM2_MAX_CAP_HANDLES, &more, &cap);
    EsysPtr<TPMS_CAPABILITY_DATA> owned(cap);
    CheckTss("Esys_GetCapability(TPM2_CAP_HANDLES)", rc);
    const TPML_HANDLE& h = cap->data.handles;
    for (UINT32 i = 0; i < h.count; i++) {
      if ((h.handle[i] >> 24) == TPM2_HT_NV_INDEX) out.push_back(h.handle[i]);
    }
    if (!more || h.count == 0) break;
    next = h.handle[h.count - 1] + 1;
  }
  return out;
}

Bytes NvRead(ESYS_CONTEXT* esys, uint32_t index) {
  uint16_t size = 0;
  ESYS_TR tr = NvHandle(esys, index, &size);
  uint32_t chunk = NvBufferMax(esys);
  Bytes out;
  out.reserve(size);
  while (out.size() < size) {
    uint16_t n = static_cast<uint16_t>(std::min<size_t>(chunk, size - out.size()));
    TPM2B_MAX_NV_BUFFER* data = nullptr;
    // Owner authorization with the empty password: how GCE's and the simulated TPM's indices are read.
    TSS2_RC rc = Esys_NV_Read(esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
                              static_cast<uint16_t>(out.size()), &data);
    EsysPtr<TPM2B_MAX_NV_BUFFER> owned(data);
    CheckTss("Esys_NV_Read", rc);
    if (data->size != n) throw PlainFailure("Esys_NV_Read", "the TPM returned fewer bytes than asked for");
    out.insert(out.end(), data->buffer, data->buffer + data->size);
  }
  return out;
}

void NvDefineWrite(ESYS_CONTEXT* esys, uint32_t index, const Bytes& data) {
  TPM2B_AUTH auth{};  // empty authorization, like GCE's indices
  TPM2B_NV_PUBLIC pub{};
  pub.nvPublic.nvIndex = index;
  pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
  // Ordinary index; written by the owner, readable by the owner, the platform and with its (empty)
  // authValue; no dictionary-attack lockout for a public value.
  pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_AUTHWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
                            TPMA_NV_PPREAD | TPMA_NV_NO_DA;
  pub.nvPublic.dataSize = static_cast<uint16_t>(data.size());
  ESYS_TR tr = ESYS_TR_NONE;
  CheckTss("Esys_NV_DefineSpace",
           Esys_NV_DefineSpace(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth, &pub, &tr));
  uint32_t chunk = NvBufferMax(esys);
  for (size_t off = 0; off < data.size(); off += chunk) {
    TPM2B_MAX_NV_BUFFER buf{};
    buf.size = static_cast<uint16_t>(std::min<size_t>(chunk, data.size() - off));
    std::memcpy(buf.buffer, data.data() + off, buf.size);
    CheckTss("Esys_NV_Write", Esys_NV_Write(esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                            &buf, static_cast<uint16_t>(off)));
  }
}

TPM2B_PUBLIC TemplateFromBytes(const Bytes& tmpl) {
  TPM2B_PUBLIC t{};
  size_t off = 0;
  CheckTss("Tss2_MU_TPMT_PUBLIC_Unmarshal", Tss2_MU_TPMT_PUBLIC_Unmarshal(tmpl.data(), tmpl.size(), &off, &t.publicArea));
  if (off != tmpl.size()) throw PlainFailure("Tss2_MU_TPMT_PUBLIC_Unmarshal", "trailing bytes after the TPMT_PUBLIC template");
  return t;
}

}  // namespace tpm
}  // namespace am
