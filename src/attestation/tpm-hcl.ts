/**
 * Azure confidential VM: an AK vouched for by the paravisor's HCL report (DESIGN.md "Attested TLS",
 * document `tpm`, fields `hclReport`, `vcek`, `certChain`). Layout (../shared/evidence/README.md):
 * a 32-byte header ("HCLA"), the SEV-SNP report at 0x20..0x4C0, IGVM_REQUEST_DATA at 0x4C0 (u32
 * data_size, version, report_type, hash_type, var_data_size; little-endian) and the runtime-claims
 * JSON at 0x4D4. The SNP report is checked exactly like an `snp` document under the policy's snp
 * section (chain to AMD's ARK, signature, TCB, debug, VMPL, measurement); its report_data[0:32]
 * must be SHA-256 of the claims bytes as stored (report_data[32:64] zero), and the claims' JWK
 * `HCLAkPub` must be exactly the quote's AK. Pure apart from the SNP validator; safe concurrently.
 */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";

import { firstFailure, type Verdict } from "./attestation.js";
import type { SNPPolicy } from "./policy.js";
import { SNP_REPORT_SIZE } from "./snp-report.js";
import { createSNPValidator, encodeSNPDocument } from "./snp-validator.js";

/** HCL_SNP_OFFSET and HCL_CLAIMS_OFFSET locate the SNP report and the runtime claims in an HCL report. */
export const HCL_SNP_OFFSET = 0x20;
const IGVM_OFFSET = HCL_SNP_OFFSET + SNP_REPORT_SIZE;
export const HCL_CLAIMS_OFFSET = IGVM_OFFSET + 20;
/** HCL_HASH_SHA256 is IGVM_REQUEST_DATA.hash_type for SHA-256, the only one accepted. */
export const HCL_HASH_SHA256 = 1;

/** HCLReport is a parsed HCL report: the SNP report and the runtime-claims bytes exactly as stored. */
export interface HCLReport {
  snpReport: Uint8Array;
  claims: Uint8Array;
  hashType: number;
}

/** parseHCLReport splits an HCL report; throws Error naming what is malformed. Bytes after the claims must be zero. */
export function parseHCLReport(bytes: Uint8Array): HCLReport {
  if (bytes.length < HCL_CLAIMS_OFFSET) throw new Error(`HCL report is ${bytes.length} bytes, shorter than its fixed part (${HCL_CLAIMS_OFFSET})`);
  if (Buffer.from(bytes.subarray(0, 4)).toString("latin1") !== "HCLA") throw new Error("HCL report does not start with \"HCLA\"");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hashType = view.getUint32(IGVM_OFFSET + 12, true);
  const size = view.getUint32(IGVM_OFFSET + 16, true);
  if (HCL_CLAIMS_OFFSET + size > bytes.length) throw new Error(`HCL runtime claims (${size} bytes) run past the report`);
  if (bytes.subarray(HCL_CLAIMS_OFFSET + size).some((b) => b !== 0)) throw new Error("HCL report has non-zero bytes after its runtime claims");
  return { snpReport: bytes.slice(HCL_SNP_OFFSET, IGVM_OFFSET), claims: bytes.slice(HCL_CLAIMS_OFFSET, HCL_CLAIMS_OFFSET + size), hashType };
}

/** hclAKPublicKey returns the claims' `HCLAkPub` JWK as a key; throws Error when absent or unusable. */
export function hclAKPublicKey(claims: Uint8Array): KeyObject {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(claims));
  } catch (err) {
    throw new Error(`HCL runtime claims are not UTF-8 JSON: ${(err as Error).message}`);
  }
  const keys = (value as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new Error("HCL runtime claims have no keys array");
  const found = keys.filter((k): k is Record<string, unknown> => typeof k === "object" && k !== null && (k as { kid?: unknown }).kid === "HCLAkPub");
  if (found.length !== 1) throw new Error(`HCL runtime claims hold ${found.length} HCLAkPub keys, want exactly 1`);
  const jwk = found[0];
  if (jwk.kty !== "RSA" && jwk.kty !== "EC") throw new Error(`HCLAkPub has kty ${JSON.stringify(jwk.kty)}`);
  try {
    const pick = jwk.kty === "RSA" ? { kty: "RSA", n: jwk.n, e: jwk.e } : { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
    return createPublicKey({ key: pick as JsonWebKey, format: "jwk" });
  } catch (err) {
    throw new Error(`HCLAkPub is not a usable key: ${(err as Error).message}`);
  }
}

/** HCLResult says whether the HCL report vouches for the AK; `snp` is the SNP report's verdict when it ran. */
export interface HCLResult {
  ok: boolean;
  detail: string;
  /** rootName names the AMD root the SNP report chained to (for "which root vouched"). */
  rootName?: string;
  test?: boolean;
  snp?: Verdict;
}

/** HCLOptions: the simulated SNP roots (accepted only with snp.allowTestRoot) and the clock. */
export interface HCLOptions {
  snpTestRoots?: readonly Uint8Array[];
  now?: () => Date;
}

/**
 * verifyHCLAnchor says whether `hclReport` (with the SNP report's `vcek` and `certChain` [ASK, ARK])
 * vouches for `ak` under `snpPolicy`. Without an snp policy section it refuses: the paravisor's
 * launch measurement must be pinned like any SNP guest's. Never throws.
 */
export async function verifyHCLAnchor(
  doc: { hclReport: Uint8Array; vcek: Uint8Array; certChain: [Uint8Array, Uint8Array] },
  ak: KeyObject,
  snpPolicy: SNPPolicy | undefined,
  options: HCLOptions = {},
): Promise<HCLResult> {
  if (snpPolicy === undefined) {
    return { ok: false, detail: "an AK vouched for by an Azure HCL report needs the policy's snp section (the paravisor's SEV-SNP measurement, TCB, debug, VMPL)" };
  }
  let hcl: HCLReport;
  let claimed: KeyObject;
  try {
    hcl = parseHCLReport(doc.hclReport);
    if (hcl.hashType !== HCL_HASH_SHA256) throw new Error(`HCL hash_type ${hcl.hashType} is not SHA-256 (1)`);
    claimed = hclAKPublicKey(hcl.claims);
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
  const snpDoc = encodeSNPDocument({ report: hcl.snpReport, vcek: doc.vcek, certChain: doc.certChain, userData: new Uint8Array(0) });
  const validator = createSNPValidator({ snp: snpPolicy }, { testRoots: options.snpTestRoots ?? [], ...(options.now ? { now: options.now } : {}) });
  // No nonce: the guest does not choose this report_data; freshness comes from the quote's nonce.
  const snp = await validator.validate(snpDoc, {});
  if (!snp.ok) return { ok: false, detail: `the HCL report's SNP report: ${firstFailure(snp) ?? "not verified"}`, snp };
  const reportData = hcl.snpReport.subarray(0x50, 0x90);
  const want = createHash("sha256").update(hcl.claims).digest();
  if (!want.equals(reportData.subarray(0, 32)) || reportData.subarray(32).some((b) => b !== 0)) {
    return { ok: false, detail: "the SNP report's report_data is not SHA-256 of the HCL runtime claims: the claims were changed", snp };
  }
  const spki = (k: KeyObject): Buffer => k.export({ type: "spki", format: "der" });
  if (!spki(claimed).equals(spki(ak))) return { ok: false, detail: "the HCL runtime claims' HCLAkPub is another key than the quote's AK", snp };
  const test = snp.facts.product === undefined || /test root/.test(snp.facts.product);
  const rootName = `AMD SEV-SNP ARK${snp.facts.product ? ` (${snp.facts.product})` : ""} via the Azure HCL report`;
  return { ok: true, detail: `${rootName}: SNP report verified, its report_data binds the runtime claims, whose HCLAkPub is the AK`, rootName, test, snp };
}
