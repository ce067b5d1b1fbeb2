/**
 * Trust on first use (DESIGN.md "Measurement policy"): the measurement policy that a peer's
 * *verified* evidence shows. The document is validated for real — signature, binding to this
 * handshake's nonce and key, and anchoring to a root we know (test roots included, reported as
 * such) — under a provisional policy pinning what the document itself lists; only when every check
 * passes is that policy returned. PCR 11 and 12 (activation markers) and PCR 10 (the Linux IMA log,
 * which changes at run time) are never pinned. Used by `meshctl measurements --from` and by meshd
 * without --measurements ("peers measured like itself").
 */
import { firstFailure, platformOIDs, type Binding, type Validator, type Verdict } from "./attestation.js";
import { parseTPMDocument } from "./document.js";
import { defaultSNPPolicy, type MeasurementPolicy } from "./policy.js";
import { parseSNPDocument, createSNPValidator } from "./snp-validator.js";
import { parseHCLReport } from "./tpm-hcl.js";
import { createTPMValidator, type TPMValidatorOptions } from "./tpm-validator.js";

/** capturedPCRs are the PCRs a captured policy pins when the document lists them: the boot chain 0-9. */
export const capturedPCRs: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/** CapturedPolicy is a policy read from verified evidence, with the root that vouched for it. */
export interface CapturedPolicy {
  policy: MeasurementPolicy;
  /** root names the root that vouched (Google's EK/AK CA, an AMD ARK, a test root). */
  root: string;
  /** testRoot is true when that root's private key is public: the policy then sets allowTestRoot. */
  testRoot: boolean;
  verdict: Verdict;
}

/** CaptureError says why no policy could be captured; `verdict` holds every check when validation ran. */
export class CaptureError extends Error {
  constructor(message: string, readonly verdict?: Verdict) {
    super(message);
    this.name = "CaptureError";
  }
}

/** CaptureOptions: the clock and simulated SNP roots (TPMValidatorOptions). */
export type CaptureOptions = TPMValidatorOptions;

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const measurementOf = (report: Uint8Array): string => hex(report.subarray(0x90, 0xc0));

async function captureTPM(document: Uint8Array, binding: Binding, options: CaptureOptions): Promise<CapturedPolicy> {
  let pcrs = new Map<number, string>();
  let snpMeasurement: string | undefined;
  try {
    const doc = parseTPMDocument(document);
    pcrs = new Map([...doc.pcrs].filter(([i]) => capturedPCRs.includes(i)).map(([i, v]) => [i, hex(v)]));
    if (doc.hcl) snpMeasurement = measurementOf(parseHCLReport(doc.hcl.hclReport).snpReport);
  } catch {
    // A malformed document: the validator below reports it by name.
  }
  const provisional: MeasurementPolicy = {
    tpm: { pcrs, allowTestRoot: true },
    ...(snpMeasurement ? { snp: { ...defaultSNPPolicy(), measurement: snpMeasurement, allowTestRoot: true } } : {}),
  };
  const verdict = await createTPMValidator(provisional, options).validate(document, binding);
  if (!verdict.ok) throw new CaptureError(`the peer's TPM evidence does not verify: ${firstFailure(verdict) ?? "no check passed"}`, verdict);
  const test = verdict.facts.akTestRoot === "true";
  const policy: MeasurementPolicy = snpMeasurement
    ? { tpm: { pcrs, allowTestRoot: false }, snp: { ...defaultSNPPolicy(), measurement: snpMeasurement, allowTestRoot: test } }
    : { tpm: { pcrs, allowTestRoot: test } };
  return { policy, root: verdict.facts.akRoot ?? "unknown", testRoot: test, verdict };
}

async function captureSNP(document: Uint8Array, binding: Binding, options: CaptureOptions): Promise<CapturedPolicy> {
  let measurement: string | undefined;
  try {
    measurement = measurementOf(parseSNPDocument(document).report);
  } catch {
    // reported by the validator
  }
  const provisional: MeasurementPolicy = { snp: { ...defaultSNPPolicy(), ...(measurement ? { measurement } : {}), allowTestRoot: true } };
  const validator = createSNPValidator(provisional, { testRoots: options.snpTestRoots ?? [], ...(options.now ? { now: options.now } : {}) });
  const verdict = await validator.validate(document, binding);
  if (!verdict.ok) throw new CaptureError(`the peer's SEV-SNP evidence does not verify: ${firstFailure(verdict) ?? "no check passed"}`, verdict);
  const product = verdict.facts.product ?? "unknown";
  const test = /test root/.test(product);
  return {
    policy: { snp: { ...defaultSNPPolicy(), measurement: measurement!, allowTestRoot: test } },
    root: test ? `a simulated SEV-SNP secure processor's test root (its private key is public)` : `AMD SEV-SNP ARK ${product}`,
    testRoot: test,
    verdict,
  };
}

/**
 * capturePolicy validates `document` of `platform` ("tpm" or "snp") against `binding` and returns the
 * policy it shows. Throws CaptureError naming the failed check when the evidence does not verify.
 */
export async function capturePolicy(platform: string, document: Uint8Array, binding: Binding, options: CaptureOptions = {}): Promise<CapturedPolicy> {
  if (platform === "tpm") return captureTPM(document, binding, options);
  if (platform === "snp") return captureSNP(document, binding, options);
  throw new CaptureError(`cannot capture a policy from platform ${JSON.stringify(platform)}`);
}

/**
 * capturingValidators returns validators for every platform that capture the policy of the document
 * they verify (for one aTLS handshake): `captured()` returns it after a successful handshake. A
 * document that does not verify fails the handshake with the validator's verdict.
 */
export function capturingValidators(options: CaptureOptions = {}): { validators: Validator[]; captured(): CapturedPolicy | undefined } {
  let result: CapturedPolicy | undefined;
  const make = (platform: "tpm" | "snp"): Validator => ({
    platform,
    oid: platformOIDs[platform],
    async validate(document: Uint8Array, binding: Binding): Promise<Verdict> {
      try {
        result = await capturePolicy(platform, document, binding, options);
        return result.verdict;
      } catch (err) {
        if (err instanceof CaptureError && err.verdict) return err.verdict;
        throw err;
      }
    },
  });
  return { validators: [make("tpm"), make("snp")], captured: () => result };
}
