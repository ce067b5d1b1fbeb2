// Tpm: one ESYS context over one TCTI. Every operation runs on the libuv thread pool and holds the
// context's mutex for its whole duration, because an ESYS context must not be used concurrently.
// Only mechanics live here (argument checks, TSS calls, marshaling); what to quote and how to read
// the results is decided in TypeScript (src/attestation/).
#include "tpm.h"

#include <cstring>
#include <map>
#include <string>

#include "args.h"
#include "errors.h"
#include "tpm-core.h"
#include "worker.h"

namespace am {
namespace {

using namespace tpm;

class Tpm : public Napi::ObjectWrap<Tpm> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tpm",
                       {InstanceMethod<&Tpm::CreateAK>("createAK"), InstanceMethod<&Tpm::CreatePrimary>("createPrimary"),
                        InstanceMethod<&Tpm::NvListM>("nvList"), InstanceMethod<&Tpm::NvReadM>("nvRead"),
                        InstanceMethod<&Tpm::NvDefineWriteM>("nvDefineWrite"), InstanceMethod<&Tpm::Quote>("quote"),
                        InstanceMethod<&Tpm::PcrRead>("pcrRead"), InstanceMethod<&Tpm::PcrExtend>("pcrExtend"),
                        InstanceMethod<&Tpm::PcrEvent>("pcrEvent"), InstanceMethod<&Tpm::Flush>("flush"),
                        InstanceMethod<&Tpm::FlushTransients>("flushTransients"),
                        InstanceMethod<&Tpm::Close>("close")});
  }

  explicit Tpm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tpm>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Tpm cannot be constructed directly: use openTpm(tcti)");
    core_ = *info[0].As<Napi::External<CoreRef>>().Data();
  }

  // core is this object's ESYS core (for TpmCoreArg).
  const CoreRef& core() const { return core_; }

 private:
  // createAK(type: "ecc" | "rsa", hierarchy: "endorsement" | "owner") -> {public: TPM2B_PUBLIC bytes, handle}
  Napi::Value CreateAK(const Napi::CallbackInfo& info) {
    std::string type = ArgString(info, 0, "type");
    if (type != "ecc" && type != "rsa") throw Napi::TypeError::New(info.Env(), "type must be \"ecc\" or \"rsa\"");
    return StartPrimary(info.Env(), "Tpm.createAK", Hierarchy(info, 1), AkTemplate(type == "rsa"));
  }

  // createPrimary(hierarchy, template: TPMT_PUBLIC bytes) -> {public: TPM2B_PUBLIC bytes, handle}:
  // CreatePrimary from a caller's template (an AK template read from NV, as GCE publishes it).
  Napi::Value CreatePrimary(const Napi::CallbackInfo& info) {
    ESYS_TR primary = Hierarchy(info, 0);
    Bytes bytes = ArgBytes(info, 1, "template", 1, sizeof(TPMT_PUBLIC));
    TPM2B_PUBLIC tmpl;
    try {
      tmpl = TemplateFromBytes(bytes);
    } catch (const Failure& f) {
      throw Napi::TypeError::New(info.Env(), "template must be a marshalled TPMT_PUBLIC: " + f.message);
    }
    return StartPrimary(info.Env(), "Tpm.createPrimary", primary, tmpl);
  }

  static ESYS_TR Hierarchy(const Napi::CallbackInfo& info, size_t i) {
    std::string hierarchy = ArgString(info, i, "hierarchy");
    if (hierarchy != "endorsement" && hierarchy != "owner")
      throw Napi::TypeError::New(info.Env(), "hierarchy must be \"endorsement\" or \"owner\"");
    return hierarchy == "owner" ? ESYS_TR_RH_OWNER : ESYS_TR_RH_ENDORSEMENT;
  }

  Napi::Value StartPrimary(Napi::Env env, const char* op, ESYS_TR primary, TPM2B_PUBLIC tmpl) {
    struct R {
      Bytes pub;
      ESYS_TR handle = ESYS_TR_NONE;
    };
    CoreRef core = core_;
    return RunAsync<R>(
        env, op,
        [core, primary, tmpl, op]() {
          Locked l(*core, op);
          TPM2B_SENSITIVE_CREATE sensitive{};
          TPM2B_DATA outside{};
          TPML_PCR_SELECTION creationPcrs{};
          R r;
          TPM2B_PUBLIC* outPublic = nullptr;
          TSS2_RC rc = Esys_CreatePrimary(l.esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                          &sensitive, &tmpl, &outside, &creationPcrs, &r.handle, &outPublic,
                                          nullptr, nullptr, nullptr);
          EsysPtr<TPM2B_PUBLIC> owned(outPublic);
          CheckTss("Esys_CreatePrimary", rc);
          r.pub = Marshal("Tss2_MU_TPM2B_PUBLIC_Marshal", &Tss2_MU_TPM2B_PUBLIC_Marshal, *outPublic);
          return r;
        },
        [](Napi::Env env, R& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("public", ToBuffer(env, r.pub));
          o.Set("handle", Napi::Number::New(env, r.handle));
          return o;
        });
  }

  // nvList() -> number[]: the defined NV indices.
  Napi::Value NvListM(const Napi::CallbackInfo& info) {
    CoreRef core = core_;
    return RunAsync<std::vector<uint32_t>>(
        info.Env(), "Tpm.nvList",
        [core]() {
          Locked l(*core, "Tpm.nvList");
          return NvList(l.esys);
        },
        [](Napi::Env env, std::vector<uint32_t>& v) -> Napi::Value {
          Napi::Array a = Napi::Array::New(env, v.size());
          for (size_t i = 0; i < v.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, v[i]));
          return a;
        });
  }

  // nvRead(index) -> Buffer: the whole index, read with owner authorization (empty password).
  Napi::Value NvReadM(const Napi::CallbackInfo& info) {
    uint32_t index = NvIndexArg(info, 0);
    CoreRef core = core_;
    return RunAsync<Bytes>(
        info.Env(), "Tpm.nvRead",
        [core, index]() {
          Locked l(*core, "Tpm.nvRead");
          return NvRead(l.esys, index);
        },
        [](Napi::Env env, Bytes& b) -> Napi::Value { return ToBuffer(env, b); });
  }

  // nvDefineWrite(index, data): defines the index (owner hierarchy, empty auth) and writes data.
  Napi::Value NvDefineWriteM(const Napi::CallbackInfo& info) {
    uint32_t index = NvIndexArg(info, 0);
    Bytes data = ArgBytes(info, 1, "data", 1, 2048);
    CoreRef core = core_;
    return RunAsync<Empty>(
        info.Env(), "Tpm.nvDefineWrite",
        [core, index, data]() {
          Locked l(*core, "Tpm.nvDefineWrite");
          NvDefineWrite(l.esys, index, data);
          return Empty{};
        },
        Undefined);
  }

  static uint32_t NvIndexArg(const Napi::CallbackInfo& info, size_t i) {
    uint32_t index = ArgU32(info, i, "index");
    if ((index >> 24) != TPM2_HT_NV_INDEX)
      throw Napi::TypeError::New(info.Env(), "index must be an NV index handle (0x01xxxxxx)");
    return index;
  }

  // quote(akHandle, pcrIndices, extraData) -> {quote: TPMS_ATTEST bytes, signature: TPMT_SIGNATURE bytes}
  Napi::Value Quote(const Napi::CallbackInfo& info) {
    ESYS_TR handle = ArgU32(info, 0, "akHandle");
    TPML_PCR_SELECTION sel = Sha256Selection(ArgPcrIndices(info, 1, "pcrs"));
    Bytes extra = ArgBytes(info, 2, "extraData", 0, sizeof(TPM2B_DATA::buffer));
    struct R {
      Bytes quote, signature;
    };
    CoreRef core = core_;
    return RunAsync<R>(
        info.Env(), "Tpm.quote",
        [core, handle, sel, extra]() {
          Locked l(*core, "Tpm.quote");
          TPM2B_DATA qualifying{};
          qualifying.size = static_cast<UINT16>(extra.size());
          std::memcpy(qualifying.buffer, extra.data(), extra.size());
          TPMT_SIG_SCHEME scheme{};
          scheme.scheme = TPM2_ALG_NULL;  // the key's own scheme
          TPM2B_ATTEST* quoted = nullptr;
          TPMT_SIGNATURE* sig = nullptr;
          TSS2_RC rc = Esys_Quote(l.esys, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
                                  &scheme, &sel, &quoted, &sig);
          EsysPtr<TPM2B_ATTEST> ownedQuote(quoted);
          EsysPtr<TPMT_SIGNATURE> ownedSig(sig);
          CheckTss("Esys_Quote", rc);
          R r;
          r.quote.assign(quoted->attestationData, quoted->attestationData + quoted->size);
          r.signature = Marshal("Tss2_MU_TPMT_SIGNATURE_Marshal", &Tss2_MU_TPMT_SIGNATURE_Marshal, *sig);
          return r;
        },
        [](Napi::Env env, R& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("quote", ToBuffer(env, r.quote));
          o.Set("signature", ToBuffer(env, r.signature));
          return o;
        });
  }

  // pcrRead(indices) -> {updateCounter, values: {"<index>": Buffer}} from the SHA-256 bank. A TPM
  // returns at most 8 digests per PCR_Read, so this reads in rounds; if the update counter moves
  // between rounds the read starts over, so all values come from one moment.
  Napi::Value PcrRead(const Napi::CallbackInfo& info) {
    std::vector<uint32_t> indices = ArgPcrIndices(info, 0, "indices");
    struct R {
      uint32_t counter = 0;
      std::map<uint32_t, Bytes> values;
    };
    CoreRef core = core_;
    return RunAsync<R>(
        info.Env(), "Tpm.pcrRead",
        [core, indices]() {
          Locked l(*core, "Tpm.pcrRead");
          for (int attempt = 0; attempt < 5; attempt++) {
            R r;
            bool consistent = true;
            TPML_PCR_SELECTION want = Sha256Selection(indices);
            for (int round = 0; r.values.size() < indices.size(); round++) {
              UINT32 counter = 0;
              TPML_PCR_SELECTION* got = nullptr;
              TPML_DIGEST* digests = nullptr;
              TSS2_RC rc = Esys_PCR_Read(l.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &want, &counter,
                                         &got, &digests);
              EsysPtr<TPML_PCR_SELECTION> ownedSel(got);
              EsysPtr<TPML_DIGEST> ownedDigests(digests);
              CheckTss("Esys_PCR_Read", rc);
              if (round > 0 && counter != r.counter) {
                consistent = false;
                break;
              }
              r.counter = counter;
              size_t k = 0, before = r.values.size();
              for (UINT32 s = 0; s < got->count; s++) {
                const TPMS_PCR_SELECTION& ps = got->pcrSelections[s];
                for (uint32_t bit = 0; bit < ps.sizeofSelect * 8u; bit++) {
                  if (!(ps.pcrSelect[bit / 8] & (1u << (bit % 8)))) continue;
                  if (k >= digests->count) throw PlainFailure("Esys_PCR_Read", "fewer digests than selected PCRs");
                  const TPM2B_DIGEST& d = digests->digests[k++];
                  if (ps.hash != TPM2_ALG_SHA256 || bit > 23) continue;
                  r.values[bit] = Bytes(d.buffer, d.buffer + d.size);
                  want.pcrSelections[0].pcrSelect[bit / 8] &= static_cast<uint8_t>(~(1u << (bit % 8)));
                }
              }
              if (r.values.size() == before)
                throw PlainFailure("Esys_PCR_Read", "the TPM returned none of the remaining PCRs (is the SHA-256 bank allocated?)");
            }
            if (consistent) return r;
          }
          throw PlainFailure("Esys_PCR_Read", "PCRs kept changing while being read");
        },
        [](Napi::Env env, R& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("updateCounter", Napi::Number::New(env, r.counter));
          Napi::Object values = Napi::Object::New(env);
          for (const auto& [idx, d] : r.values) values.Set(std::to_string(idx), ToBuffer(env, d));
          o.Set("values", values);
          return o;
        });
  }

  // pcrExtend(index, sha256Digest): PCR_Extend of the SHA-256 bank only.
  Napi::Value PcrExtend(const Napi::CallbackInfo& info) {
    uint32_t index = ArgU32(info, 0, "index", 23);
    Bytes digest = ArgBytes(info, 1, "digest", TPM2_SHA256_DIGEST_SIZE, TPM2_SHA256_DIGEST_SIZE);
    CoreRef core = core_;
    return RunAsync<Empty>(
        info.Env(), "Tpm.pcrExtend",
        [core, index, digest]() {
          Locked l(*core, "Tpm.pcrExtend");
          TPML_DIGEST_VALUES values{};
          values.count = 1;
          values.digests[0].hashAlg = TPM2_ALG_SHA256;
          std::memcpy(values.digests[0].digest.sha256, digest.data(), digest.size());
          CheckTss("Esys_PCR_Extend",
                   Esys_PCR_Extend(l.esys, ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values));
          return Empty{};
        },
        Undefined);
  }

  // pcrEvent(index, data): PCR_Event; the TPM hashes data with each allocated bank's algorithm and
  // extends every bank, so no bank of the PCR keeps its old value.
  Napi::Value PcrEvent(const Napi::CallbackInfo& info) {
    uint32_t index = ArgU32(info, 0, "index", 23);
    Bytes data = ArgBytes(info, 1, "data", 1, sizeof(TPM2B_EVENT::buffer));
    CoreRef core = core_;
    return RunAsync<Empty>(
        info.Env(), "Tpm.pcrEvent",
        [core, index, data]() {
          Locked l(*core, "Tpm.pcrEvent");
          TPM2B_EVENT event{};
          event.size = static_cast<UINT16>(data.size());
          std::memcpy(event.buffer, data.data(), data.size());
          TPML_DIGEST_VALUES* digests = nullptr;
          TSS2_RC rc = Esys_PCR_Event(l.esys, ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                      &event, &digests);
          EsysPtr<TPML_DIGEST_VALUES> owned(digests);
          CheckTss("Esys_PCR_Event", rc);
          return Empty{};
        },
        Undefined);
  }

  // flush(handle): FlushContext of a transient object (an AK from createAK).
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    ESYS_TR handle = ArgU32(info, 0, "handle");
    CoreRef core = core_;
    return RunAsync<Empty>(
        info.Env(), "Tpm.flush",
        [core, handle]() {
          Locked l(*core, "Tpm.flush");
          CheckTss("Esys_FlushContext", Esys_FlushContext(l.esys, handle));
          return Empty{};
        },
        Undefined);
  }

  // flushTransients() -> number: flushes every transient object the TPM reports (TPM2_CAP_HANDLES).
  // Without a resource manager (swtpm, /dev/tpm0) objects of an earlier, crashed process stay loaded.
  Napi::Value FlushTransients(const Napi::CallbackInfo& info) {
    CoreRef core = core_;
    return RunAsync<uint32_t>(
        info.Env(), "Tpm.flushTransients",
        [core]() {
          Locked l(*core, "Tpm.flushTransients");
          TPMI_YES_NO more = TPM2_NO;
          TPMS_CAPABILITY_DATA* cap = nullptr;
          TSS2_RC rc = Esys_GetCapability(l.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                          TPM2_TRANSIENT_FIRST, TPM2_MAX_CAP_HANDLES, &more, &cap);
          EsysPtr<TPMS_CAPABILITY_DATA> owned(cap);
          CheckTss("Esys_GetCapability", rc);
          uint32_t flushed = 0;
          for (UINT32 i = 0; i < cap->data.handles.count; i++) {
            TPM2_HANDLE h = cap->data.handles.handle[i];
            if ((h >> 24) != TPM2_HT_TRANSIENT) continue;
            ESYS_TR tr = ESYS_TR_NONE;
            CheckTss("Esys_TR_FromTPMPublic", Esys_TR_FromTPMPublic(l.esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr));
            CheckTss("Esys_FlushContext", Esys_FlushContext(l.esys, tr));
            flushed++;
          }
          return flushed;
        },
        [](Napi::Env env, uint32_t& n) -> Napi::Value { return Napi::Number::New(env, n); });
  }

  // close(): finalizes the contexts after in-flight operations; later operations fail. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CoreRef core = core_;
    return RunAsync<Empty>(
        info.Env(), "Tpm.close",
        [core]() {
          std::lock_guard<std::mutex> lock(core->mu);
          core->Finalize();
          return Empty{};
        },
        Undefined);
  }

  CoreRef core_;
};

// openTpm(tcti) -> Promise<Tpm>: Tss2_TctiLdr_Initialize + Esys_Initialize, then one GetCapability
// so an unreachable or broken TPM fails here rather than at the first real operation.
Napi::Value OpenTpm(const Napi::CallbackInfo& info) {
  std::string conf = ArgString(info, 0, "tcti");
  if (conf.empty()) throw Napi::TypeError::New(info.Env(), "tcti must not be empty");
  return RunAsync<CoreRef>(
      info.Env(), "openTpm",
      [conf]() {
        auto core = std::make_shared<TpmCore>();
        CheckTss("Tss2_TctiLdr_Initialize", Tss2_TctiLdr_Initialize(conf.c_str(), &core->tcti));
        CheckTss("Esys_Initialize", Esys_Initialize(&core->esys, core->tcti, nullptr));
        TPMI_YES_NO more = TPM2_NO;
        TPMS_CAPABILITY_DATA* cap = nullptr;
        TSS2_RC rc = Esys_GetCapability(core->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                        TPM2_CAP_TPM_PROPERTIES, TPM2_PT_MANUFACTURER, 1, &more, &cap);
        EsysPtr<TPMS_CAPABILITY_DATA> owned(cap);
        CheckTss("Esys_GetCapability", rc);
        return core;
      },
      [](Napi::Env env, CoreRef& core) -> Napi::Value {
        auto* ctor = env.GetInstanceData<Napi::FunctionReference>();
        auto ext = Napi::External<CoreRef>::New(env, new CoreRef(core), [](Napi::Env, CoreRef* p) { delete p; });
        return ctor->New({ext});
      });
}

}  // namespace

std::shared_ptr<tpm::TpmCore> TpmCoreArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
  if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(ctor->Value()))
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Tpm from openTpm");
  return Tpm::Unwrap(info[i].As<Napi::Object>())->core();
}

void InitTpm(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = Tpm::Define(env);
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(cls)));
  exports.Set("Tpm", cls);
  exports.Set("openTpm", Napi::Function::New(env, OpenTpm, "openTpm"));
}

}  // namespace am
