// Seal and unseal up to 128 bytes to the SHA-256 values of a PCR selection.
//
// The sealed object is a keyedhash "sealed data" object (fixedTPM, fixedParent, no userWithAuth: only
// a policy session can use it) created under the storage primary key (SRK) of the owner hierarchy,
// with authPolicy = TPM2_PolicyPCR over the selection's current values (computed by the TPM in a
// trial session). The SRK is a deterministic ECC P-256 storage primary, re-created for every call and
// flushed afterwards, so nothing stays loaded and no persistent handle is needed.
//
// The secret never crosses the TCTI in the clear: Create's sensitive input and Unseal's output are
// parameter-encrypted (AES-128-CFB) in a session salted with the SRK. Every object and session is
// flushed before returning, also when a step fails. Like every Tpm operation, each call runs on the
// thread pool and holds the core's mutex throughout.
#include "tpm-seal.h"

#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "tpm-core.h"
#include "tpm.h"
#include "worker.h"

namespace am {
namespace {

using namespace tpm;

// maxSealedBytes is MAX_SYM_DATA: the most a sealed data object may hold.
constexpr size_t maxSealedBytes = 128;

// SrkTemplate is an ECC P-256 storage primary key (restricted decrypt, AES-128-CFB, noDA,
// userWithAuth with an empty auth value, zero-length unique): the same template yields the same
// key for as long as the owner hierarchy's seed lives.
TPM2B_PUBLIC SrkTemplate() {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  p.parameters.eccDetail.symmetric.keyBits.aes = 128;
  p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

// SealedTemplate is a sealed data object usable only through `policy`.
TPM2B_PUBLIC SealedTemplate(const TPM2B_DIGEST& policy) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_KEYEDHASH;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;
  p.authPolicy = policy;
  p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
  return t;
}

TPMT_SYM_DEF Aes128Cfb() {
  TPMT_SYM_DEF s{};
  s.algorithm = TPM2_ALG_AES;
  s.keyBits.aes = 128;
  s.mode.aes = TPM2_ALG_CFB;
  return s;
}

// Flushed flushes the transient objects and sessions it holds when it goes out of scope (errors
// ignored: this is cleanup, possibly after the failure being reported).
class Flushed {
 public:
  explicit Flushed(ESYS_CONTEXT* esys) : esys_(esys) {}
  ~Flushed() {
    for (auto it = handles_.rbegin(); it != handles_.rend(); ++it) Esys_FlushContext(esys_, *it);
  }
  Flushed(const Flushed&) = delete;
  Flushed& operator=(const Flushed&) = delete;
  ESYS_TR Add(ESYS_TR h) {
    handles_.push_back(h);
    return h;
  }

 private:
  ESYS_CONTEXT* esys_;
  std::vector<ESYS_TR> handles_;
};

// CreateSrk creates the storage primary key and registers it with `flush`.
ESYS_TR CreateSrk(ESYS_CONTEXT* esys, Flushed& flush) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC tmpl = SrkTemplate();
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION creationPcrs{};
  ESYS_TR srk = ESYS_TR_NONE;
  TPM2B_PUBLIC* outPublic = nullptr;
  TPM2B_CREATION_DATA* creationData = nullptr;
  TPM2B_DIGEST* creationHash = nullptr;
  TPMT_TK_CREATION* ticket = nullptr;
  TSS2_RC rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                  &tmpl, &outside, &creationPcrs, &srk, &outPublic, &creationData, &creationHash,
                                  &ticket);
  EsysPtr<TPM2B_PUBLIC> o1(outPublic);
  EsysPtr<TPM2B_CREATION_DATA> o2(creationData);
  EsysPtr<TPM2B_DIGEST> o3(creationHash);
  EsysPtr<TPMT_TK_CREATION> o4(ticket);
  CheckTss("Esys_CreatePrimary (storage key)", rc);
  return flush.Add(srk);
}

// StartSession starts a session of `type`; salted with `saltKey` (and AES-128-CFB for parameter
// encryption) unless saltKey is ESYS_TR_NONE.
ESYS_TR StartSession(ESYS_CONTEXT* esys, TPM2_SE type, ESYS_TR saltKey, Flushed& flush) {
  TPMT_SYM_DEF sym{};
  if (saltKey == ESYS_TR_NONE) sym.algorithm = TPM2_ALG_NULL;
  else sym = Aes128Cfb();
  ESYS_TR session = ESYS_TR_NONE;
  CheckTss("Esys_StartAuthSession", Esys_StartAuthSession(esys, saltKey, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                          ESYS_TR_NONE, nullptr, type, &sym, TPM2_ALG_SHA256, &session));
  return flush.Add(session);
}

void PolicyPcr(ESYS_CONTEXT* esys, ESYS_TR session, const TPML_PCR_SELECTION& sel) {
  TPM2B_DIGEST current{};  // empty: the TPM uses the PCRs' current values
  CheckTss("Esys_PolicyPCR", Esys_PolicyPCR(esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &current, &sel));
}

template <typename T>
T Unmarshal(const char* call, TSS2_RC (*fn)(const uint8_t*, size_t, size_t*, T*), const Bytes& b) {
  T v{};
  size_t off = 0;
  CheckTss(call, fn(b.data(), b.size(), &off, &v));
  if (off != b.size()) throw PlainFailure(call, std::to_string(b.size() - off) + " bytes left over");
  return v;
}

void Wipe(void* p, size_t n) {
  volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
  while (n--) *v++ = 0;
}

// tpmSealPcrs(tpm, pcrs, data) -> {public: TPM2B_PUBLIC bytes, private: TPM2B_PRIVATE bytes}
Napi::Value SealPcrs(const Napi::CallbackInfo& info) {
  CoreRef core = TpmCoreArg(info, 0, "tpm");
  TPML_PCR_SELECTION sel = Sha256Selection(ArgPcrIndices(info, 1, "pcrs"));
  auto data = std::make_shared<Bytes>(ArgBytes(info, 2, "data", 1, maxSealedBytes));
  struct R {
    Bytes pub, priv;
  };
  return RunAsync<R>(
      info.Env(), "tpmSealPcrs",
      [core, sel, data]() {
        Locked l(*core, "tpmSealPcrs");
        Flushed flush(l.esys);
        ESYS_TR srk = CreateSrk(l.esys, flush);

        ESYS_TR trial = StartSession(l.esys, TPM2_SE_TRIAL, ESYS_TR_NONE, flush);
        PolicyPcr(l.esys, trial, sel);
        TPM2B_DIGEST* digest = nullptr;
        TSS2_RC rc = Esys_PolicyGetDigest(l.esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &digest);
        EsysPtr<TPM2B_DIGEST> ownedDigest(digest);
        CheckTss("Esys_PolicyGetDigest", rc);

        ESYS_TR enc = StartSession(l.esys, TPM2_SE_HMAC, srk, flush);
        CheckTss("Esys_TRSess_SetAttributes",
                 Esys_TRSess_SetAttributes(l.esys, enc, TPMA_SESSION_DECRYPT | TPMA_SESSION_CONTINUESESSION, 0xff));
        TPM2B_SENSITIVE_CREATE sensitive{};
        sensitive.sensitive.data.size = static_cast<UINT16>(data->size());
        std::memcpy(sensitive.sensitive.data.buffer, data->data(), data->size());
        Wipe(data->data(), data->size());
        TPM2B_PUBLIC tmpl = SealedTemplate(*digest);
        TPM2B_DATA outside{};
        TPML_PCR_SELECTION creationPcrs{};
        TPM2B_PRIVATE* outPrivate = nullptr;
        TPM2B_PUBLIC* outPublic = nullptr;
        TPM2B_CREATION_DATA* creationData = nullptr;
        TPM2B_DIGEST* creationHash = nullptr;
        TPMT_TK_CREATION* ticket = nullptr;
        rc = Esys_Create(l.esys, srk, enc, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl, &outside, &creationPcrs,
                         &outPrivate, &outPublic, &creationData, &creationHash, &ticket);
        Wipe(&sensitive, sizeof sensitive);
        EsysPtr<TPM2B_PRIVATE> o1(outPrivate);
        EsysPtr<TPM2B_PUBLIC> o2(outPublic);
        EsysPtr<TPM2B_CREATION_DATA> o3(creationData);
        EsysPtr<TPM2B_DIGEST> o4(creationHash);
        EsysPtr<TPMT_TK_CREATION> o5(ticket);
        CheckTss("Esys_Create", rc);
        R r;
        r.pub = Marshal("Tss2_MU_TPM2B_PUBLIC_Marshal", &Tss2_MU_TPM2B_PUBLIC_Marshal, *outPublic);
        r.priv = Marshal("Tss2_MU_TPM2B_PRIVATE_Marshal", &Tss2_MU_TPM2B_PRIVATE_Marshal, *outPrivate);
        return r;
      },
      [](Napi::Env env, R& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("public", ToBuffer(env, r.pub));
        o.Set("private", ToBuffer(env, r.priv));
        return o;
      });
}

// tpmUnsealPcrs(tpm, public, private, pcrs) -> Buffer: the sealed data.
Napi::Value UnsealPcrs(const Napi::CallbackInfo& info) {
  CoreRef core = TpmCoreArg(info, 0, "tpm");
  Bytes pub = ArgBytes(info, 1, "public", 1, sizeof(TPM2B_PUBLIC));
  Bytes priv = ArgBytes(info, 2, "private", 1, sizeof(TPM2B_PRIVATE));
  TPML_PCR_SELECTION sel = Sha256Selection(ArgPcrIndices(info, 3, "pcrs"));
  return RunAsync<Bytes>(
      info.Env(), "tpmUnsealPcrs",
      [core, pub, priv, sel]() {
        TPM2B_PUBLIC inPublic = Unmarshal("Tss2_MU_TPM2B_PUBLIC_Unmarshal", &Tss2_MU_TPM2B_PUBLIC_Unmarshal, pub);
        TPM2B_PRIVATE inPrivate =
            Unmarshal("Tss2_MU_TPM2B_PRIVATE_Unmarshal", &Tss2_MU_TPM2B_PRIVATE_Unmarshal, priv);
        Locked l(*core, "tpmUnsealPcrs");
        Flushed flush(l.esys);
        ESYS_TR srk = CreateSrk(l.esys, flush);
        ESYS_TR item = ESYS_TR_NONE;
        CheckTss("Esys_Load", Esys_Load(l.esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &inPrivate,
                                        &inPublic, &item));
        flush.Add(item);
        ESYS_TR session = StartSession(l.esys, TPM2_SE_POLICY, srk, flush);
        PolicyPcr(l.esys, session, sel);
        CheckTss("Esys_TRSess_SetAttributes",
                 Esys_TRSess_SetAttributes(l.esys, session, TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION, 0xff));
        TPM2B_SENSITIVE_DATA* out = nullptr;
        TSS2_RC rc = Esys_Unseal(l.esys, item, session, ESYS_TR_NONE, ESYS_TR_NONE, &out);
        EsysPtr<TPM2B_SENSITIVE_DATA> owned(out);
        CheckTss("Esys_Unseal", rc);
        Bytes data(out->buffer, out->buffer + out->size);
        Wipe(out->buffer, out->size);
        return data;
      },
      [](Napi::Env env, Bytes& data) -> Napi::Value {
        Napi::Buffer<uint8_t> b = ToBuffer(env, data);
        Wipe(data.data(), data.size());
        return b;
      });
}

}  // namespace

void InitTpmSeal(Napi::Env env, Napi::Object exports) {
  exports.Set("tpmSealPcrs", Napi::Function::New(env, SealPcrs, "tpmSealPcrs"));
  exports.Set("tpmUnsealPcrs", Napi::Function::New(env, UnsealPcrs, "tpmUnsealPcrs"));
}

}  // namespace am
