/**
 * SEV-SNP validator (DESIGN.md "Attested TLS", platform `snp`). A document is UTF-8 JSON
 * `{"report": b64, "vcek": b64 DER, "certChain": [b64 ASK DER, b64 ARK DER], "userData": b64}`;
 * the report binds `report_data = SHA-512(nonce ‖ userData)`, is signed by the VCEK, and the VCEK
 * chains to a pinned AMD ARK. Every check is reported by name; nothing here throws for a bad document.
 */
import { createHash, timingSafeEqual, verify } from "node:crypto";
import { platformOIDs, verdictOf, type Binding, type Check, type Validator, type Verdict } from "./attestation.js";
import { base64ArrayField, base64Field, checkFields, DocumentError, MAX_USER_DATA_BYTES, parseDocumentObject } from "./document.js";
import { defaultSNPPolicy, type MeasurementPolicy, type SNPPolicy } from "./policy.js";
import { AMD_SNP_ROOTS } from "./snp-roots.js";
import { readVcekExtensions, sha256Hex, vcekPublicKey, verifySNPChain, type PinnedRoot, type SNPChainResult } from "./snp-certs.js";
import {
  parseSNPReport, reportSignatureP1363, reportVersion, signedBytes, tcbToString, unsignedTailIsZero,
  SNP_MAX_REPORT_VERSION, SNP_MIN_REPORT_VERSION, SNP_POLICY_DEBUG_BIT, SNP_REPORT_SIZE, SNP_SIG_ALGO_ECDSA_P384_SHA384,
  type SNPReport,
} from "./snp-report.js";

const MAX_CERT_BYTES = 16 * 1024;

/** snpCheckNames lists the checks of an SNP verdict, in the order they are reported; every verdict names all of them. */
export const snpCheckNames = [
  "format",
  "report version",
  "cert chain",
  "signature",
  "nonce binding",
  "userData binding",
  "debug",
  "vmpl",
  "measurement",
  "tcb",
  "chip id",
  "fresh marker",
] as const;

/** SNPDocument is a decoded attestation document; certChain is [ASK DER, ARK DER]. */
export interface SNPDocument {
  report: Uint8Array;
  vcek: Uint8Array;
  certChain: [Uint8Array, Uint8Array];
  userData: Uint8Array;
}

/** SNPValidatorOptions tunes createSNPValidator; every field is optional. */
export interface SNPValidatorOptions {
  /**
   * testRoots are DER ARKs of simulated secure processors (SimulatedSNPIssuer.testRoot()). They are
   * pinned only when the policy sets snp.allowTestRoot; otherwise they serve only to explain a failure.
   */
  testRoots?: readonly Uint8Array[];
  /** now is the clock for certificate validity periods; undefined means the system clock. */
  now?: () => Date;
}

/** snpReportData is the report_data a document must carry: SHA-512(nonce ‖ userData), 64 bytes. */
export function snpReportData(nonce: Uint8Array, userData: Uint8Array): Uint8Array {
  return createHash("sha512").update(nonce).update(userData).digest();
}

/** encodeSNPDocument renders a document in the contract's JSON shape (canonical base64, fixed key order). */
export function encodeSNPDocument(doc: SNPDocument): Uint8Array {
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
  const json = { report: b64(doc.report), vcek: b64(doc.vcek), certChain: doc.certChain.map(b64), userData: b64(doc.userData) };
  return new TextEncoder().encode(JSON.stringify(json));
}

/**
 * parseSNPDocument decodes a document strictly (document.ts: at most MAX_DOCUMENT_BYTES of UTF-8
 * JSON without duplicate keys, exactly the four fields, canonical base64), with a report of exactly
 * 0x4A0 bytes whose unsigned reserved tail is zero. Throws DocumentError naming the field.
 */
export function parseSNPDocument(document: Uint8Array): SNPDocument {
  const root = parseDocumentObject(document);
  checkFields(root, ["report", "vcek", "certChain", "userData"]);
  const report = base64Field(root.report, "report", SNP_REPORT_SIZE, SNP_REPORT_SIZE);
  if (!unsignedTailIsZero(report)) throw new DocumentError("report", "reserved bytes after the signature are not zero");
  const vcek = base64Field(root.vcek, "vcek", 1, MAX_CERT_BYTES);
  const [ask, ark] = base64ArrayField(root.certChain, "certChain", 2, 2, 1, MAX_CERT_BYTES) as [Uint8Array, Uint8Array];
  const userData = base64Field(root.userData, "userData", 0, MAX_USER_DATA_BYTES);
  return { report, vcek, certChain: [ask, ark], userData };
}

const sigMemo = new Map<string, boolean>();
const SIG_MEMO_MAX = 4096;

/** verifyReportSignature verifies ECDSA P-384 SHA-384 over [0, 0x2A0), memoized by the SHA-256 of key, signed bytes and signature. */
function verifyReportSignature(report: SNPReport, chain: SNPChainResult): Check {
  const name = "signature";
  if (report.signatureAlgo !== SNP_SIG_ALGO_ECDSA_P384_SHA384) return { name, status: "failed", detail: `signature_algo ${report.signatureAlgo} is not ECDSA P-384 SHA-384` };
  if (report.signingKey !== 0) return { name, status: "failed", detail: `report signed with key ${report.signingKey} (0 is VCEK; VLEK is not supported)` };
  if (report.maskChipKey) return { name, status: "failed", detail: "MASK_CHIP_KEY is set: the report carries no signature" };
  if (!chain.vcek) return { name, status: "failed", detail: "no parseable VCEK to verify with" };
  const sig = reportSignatureP1363(report);
  if (typeof sig === "string") return { name, status: "failed", detail: sig };
  const signed = signedBytes(report);
  const memoKey = createHash("sha256").update(chain.vcek.spki).update(signed).update(sig).digest("hex");
  let ok = sigMemo.get(memoKey);
  if (ok === undefined) {
    try {
      ok = verify("sha384", signed, { key: vcekPublicKey(chain.vcek), dsaEncoding: "ieee-p1363" }, sig);
    } catch (err) {
      return { name, status: "failed", detail: `VCEK key unusable: ${(err as Error).message}` };
    }
    if (sigMemo.size >= SIG_MEMO_MAX) sigMemo.delete(sigMemo.keys().next().value!);
    sigMemo.set(memoKey, ok);
  }
  return ok
    ? { name, status: "passed", detail: "ECDSA P-384 SHA-384 by the VCEK over [0, 0x2A0)" }
    : { name, status: "failed", detail: "report signature does not verify with the VCEK key" };
}

/** vcekExtensionsOr reads the VCEK's extensions, or returns check `name` failed saying why there are none to compare `what` with. */
function vcekExtensionsOr(chain: SNPChainResult, name: string, what: string): ReturnType<typeof readVcekExtensions> | Check {
  if (!chain.vcek) return { name, status: "failed", detail: `no parseable VCEK to compare ${what} with` };
  try {
    return readVcekExtensions(chain.vcek);
  } catch (err) {
    return { name, status: "failed", detail: (err as Error).message };
  }
}

function tcbCheck(report: SNPReport, chain: SNPChainResult, min: SNPPolicy["minTcb"]): Check {
  const name = "tcb";
  const r = report.reportedTcb;
  const low = (["bootloader", "tee", "snp", "microcode"] as const).filter((f) => r[f] < min[f]);
  if (low.length > 0) {
    return { name, status: "failed", detail: `reported_tcb ${tcbToString(r)} below policy minimum in ${low.map((f) => `${f} (${r[f]} < ${min[f]})`).join(", ")}` };
  }
  const ext = vcekExtensionsOr(chain, name, "reported_tcb");
  if ("status" in ext) return ext;
  const vcekTcb = ext.tcb;
  if (!vcekTcb) return { name, status: "failed", detail: "VCEK lacks the TCB extensions 1.3.6.1.4.1.3704.1.3.{1,2,3,8}" };
  const fields = report.turin ? (["fmc", "bootloader", "tee", "snp", "microcode"] as const) : (["bootloader", "tee", "snp", "microcode"] as const);
  if (fields.some((f) => vcekTcb[f] !== r[f])) {
    return { name, status: "failed", detail: `VCEK TCB ${tcbToString(vcekTcb)} differs from reported_tcb ${tcbToString(r)}` };
  }
  return { name, status: "passed", detail: `reported_tcb ${tcbToString(r)} ≥ minimum and equal to the VCEK's TCB` };
}

function chipIdCheck(report: SNPReport, chain: SNPChainResult): Check {
  const name = "chip id";
  const ext = vcekExtensionsOr(chain, name, "chip_id");
  if ("status" in ext) return ext;
  const hwId = ext.hwId;
  if (!hwId) return { name, status: "skipped", detail: "VCEK carries no hwID extension" };
  if (report.chipId.every((b) => b === 0)) return { name, status: "skipped", detail: "report chip_id is masked (all zero)" };
  // Turin hwIDs are 8 bytes; the report's chip_id then holds them followed by zeros.
  const same = Buffer.from(report.chipId.subarray(0, hwId.length)).equals(hwId) && report.chipId.subarray(hwId.length).every((b) => b === 0);
  return same
    ? { name, status: "passed", detail: "VCEK hwID equals the report's chip_id" }
    : { name, status: "failed", detail: "VCEK hwID differs from the report's chip_id" };
}

function bindingChecks(report: SNPReport, doc: SNPDocument, binding: Binding): Check[] {
  const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && timingSafeEqual(a, b);
  const nonce: Check =
    binding.nonce === undefined
      ? { name: "nonce binding", status: "skipped", detail: "no nonce given: report_data not checked" }
      : eq(report.reportData, snpReportData(binding.nonce, doc.userData))
        ? { name: "nonce binding", status: "passed", detail: "report_data = SHA-512(nonce ‖ userData)" }
        : { name: "nonce binding", status: "failed", detail: "report_data is not SHA-512(nonce ‖ userData): the report was made for another handshake" };
  const userData: Check =
    binding.userData === undefined
      ? { name: "userData binding", status: "skipped", detail: "no userData given" }
      : eq(doc.userData, binding.userData)
        ? { name: "userData binding", status: "passed", detail: "document userData is the expected one" }
        : { name: "userData binding", status: "failed", detail: "document userData differs from the expected (certificate key) userData" };
  return [nonce, userData];
}

function policyChecks(report: SNPReport, snp: SNPPolicy): Check[] {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
  const debug: Check = !report.debug
    ? { name: "debug", status: "passed", detail: "guest policy DEBUG bit is clear" }
    : snp.allowDebug
      ? { name: "debug", status: "passed", detail: "guest policy allows debugging; the measurement policy allows debug" }
      : { name: "debug", status: "failed", detail: `guest policy 0x${report.policy.toString(16)} allows debugging (bit ${SNP_POLICY_DEBUG_BIT}); refused unless snp.allowDebug` };
  const vmpl: Check =
    report.vmpl <= snp.maxVmpl
      ? { name: "vmpl", status: "passed", detail: `VMPL ${report.vmpl} ≤ ${snp.maxVmpl}` }
      : { name: "vmpl", status: "failed", detail: `VMPL ${report.vmpl} above the policy's maximum ${snp.maxVmpl}` };
  const got = hex(report.measurement);
  const measurement: Check =
    snp.measurement === undefined
      ? { name: "measurement", status: "failed", detail: `the policy pins no snp.measurement (report has ${got}): nothing to compare with, refused` }
      : got === snp.measurement.toLowerCase()
        ? { name: "measurement", status: "passed", detail: got }
        : { name: "measurement", status: "failed", detail: `measurement ${got}, policy wants ${snp.measurement}` };
  return [debug, vmpl, measurement];
}

function notEvaluated(from: number, why: string): Check[] {
  return snpCheckNames.slice(from).map((name): Check => ({ name, status: "skipped", detail: `not evaluated: ${why}` }));
}

function factsOf(report: SNPReport, chain: SNPChainResult): Record<string, string> {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
  const t = report.reportedTcb;
  return {
    version: String(report.version),
    measurement: hex(report.measurement),
    reportedTcb: tcbToString(t),
    "tcb.bootloader": String(t.bootloader),
    "tcb.tee": String(t.tee),
    "tcb.snp": String(t.snp),
    "tcb.microcode": String(t.microcode),
    ...(t.fmc !== undefined ? { "tcb.fmc": String(t.fmc) } : {}),
    vmpl: String(report.vmpl),
    debug: String(report.debug),
    policy: `0x${report.policy.toString(16)}`,
    chipId: hex(report.chipId),
    hostData: hex(report.hostData),
    reportData: hex(report.reportData),
    ...(chain.product ? { product: chain.product } : {}),
  };
}

/**
 * createSNPValidator returns the Validator for platform "snp" under `policy` (a policy without an snp
 * section, or one pinning no measurement, fails the "measurement" check); its verdicts name
 * every check of snpCheckNames, in that order ("fresh marker" is always skipped: SEV-SNP has no
 * PCR marker; with binding.requireFresh the detail says so). The policy is copied:
 * later changes to it do not affect the validator. validate() is safe to call concurrently.
 */
export function createSNPValidator(policy: MeasurementPolicy, options: SNPValidatorOptions = {}): Validator {
  const named = policy.snp !== undefined;
  const base = policy.snp ?? defaultSNPPolicy();
  const snp: SNPPolicy = { ...base, minTcb: { ...base.minTcb } };
  const now = options.now ?? ((): Date => new Date());
  const testRoots: PinnedRoot[] = (options.testRoots ?? []).map((der) => ({ product: "simulator test root", arkSha256: sha256Hex(der) }));
  const roots: readonly PinnedRoot[] = [...AMD_SNP_ROOTS, ...(snp.allowTestRoot ? testRoots : [])];
  const platform = "snp";

  function run(document: Uint8Array, binding: Binding): Verdict {
    const checks: Check[] = [];
    let doc: SNPDocument;
    try {
      doc = parseSNPDocument(document);
    } catch (err) {
      if (!(err instanceof DocumentError)) throw err;
      return verdictOf(platform, [{ name: "format", status: "failed", detail: err.message }, ...notEvaluated(1, "format failed")]);
    }
    checks.push({ name: "format", status: "passed", detail: `report ${doc.report.length} bytes, VCEK ${doc.vcek.length} bytes, userData ${doc.userData.length} bytes` });
    const version = reportVersion(doc.report);
    if (version < SNP_MIN_REPORT_VERSION || version > SNP_MAX_REPORT_VERSION) {
      checks.push({ name: "report version", status: "failed", detail: `version ${version}, want ${SNP_MIN_REPORT_VERSION}-${SNP_MAX_REPORT_VERSION}` });
      return verdictOf(platform, [...checks, ...notEvaluated(2, "unknown report layout")]);
    }
    checks.push({ name: "report version", status: "passed", detail: `version ${version}` });
    const report = parseSNPReport(doc.report);
    const chain = verifySNPChain({ vcek: doc.vcek, ask: doc.certChain[0], ark: doc.certChain[1] }, roots, now());
    let chainDetail = chain.detail;
    if (!chain.ok && !snp.allowTestRoot && testRoots.some((r) => r.arkSha256 === sha256Hex(doc.certChain[1]))) {
      chainDetail = "ARK is a simulated secure processor's test root; the policy does not set snp.allowTestRoot";
    }
    checks.push({ name: "cert chain", status: chain.ok ? "passed" : "failed", detail: chainDetail });
    checks.push(verifyReportSignature(report, chain));
    checks.push(...bindingChecks(report, doc, binding));
    const pc = policyChecks(report, snp);
    if (!named) pc[2] = { name: "measurement", status: "failed", detail: "the policy names no snp section: SEV-SNP documents are not accepted" };
    checks.push(...pc);
    checks.push(tcbCheck(report, chain, snp.minTcb));
    checks.push(chipIdCheck(report, chain));
    checks.push({
      name: "fresh marker",
      status: "skipped",
      detail: binding.requireFresh
        ? "required, but SEV-SNP has no PCR marker: freshness is not attested (host_data could carry a marker later)"
        : "not required",
    });
    return verdictOf(platform, checks, factsOf(report, chain));
  }

  return {
    platform,
    oid: platformOIDs.snp,
    async validate(document: Uint8Array, binding: Binding): Promise<Verdict> {
      try {
        return run(document, binding ?? {});
      } catch (err) {
        // A bug, not a bad document: still an answer, never an exception through the handshake.
        return verdictOf(platform, [{ name: "format", status: "failed", detail: `internal error: ${(err as Error)?.message ?? String(err)}` }]);
      }
    },
  };
}
