/**
 * Attestation issuers and validators (DESIGN.md "Attested TLS"). An Issuer produces an attestation
 * document binding a nonce and userData; a Validator checks one and reports every check it ran.
 */

/** platformOIDs are the certificate-extension OIDs (under the 2.25 UUID arc) per platform. */
export const platformOIDs = {
  tpm: "2.25.253605056268324015777377207452082665588",
  snp: "2.25.143636036570219571130665177127765518519",
} as const;

/** Platform names a real attestation platform. */
export type Platform = keyof typeof platformOIDs;

/** Issuer produces attestation documents. Safe to call concurrently (implementations serialize hardware access). */
export interface Issuer {
  /** platform names the document format ("tpm", "snp"; tests may use others). */
  readonly platform: string;
  /** oid is the certificate extension OID the document is carried under. */
  readonly oid: string;
  /** issue returns the attestation document (UTF-8 JSON) binding `nonce` and `userData`. */
  issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array>;
}

/** CheckStatus: skipped is never counted as passed. */
export type CheckStatus = "passed" | "failed" | "skipped";

/** Check is one named check of a validation and its outcome. */
export interface Check {
  name: string;
  status: CheckStatus;
  detail?: string;
}

/** Verdict is a validator's full answer. `ok` is true only when no check failed and at least one passed. */
export interface Verdict {
  platform: string;
  ok: boolean;
  checks: Check[];
  /** facts are measured values for display: PCRs, SNP measurement, TCB, … (hex strings). */
  facts: Record<string, string>;
}

/** Binding is what the document must bind; an absent nonce makes the binding checks "skipped". */
export interface Binding {
  nonce?: Uint8Array;
  userData?: Uint8Array;
  /** requireFresh demands the "initialized" marker to be unset (PCR 11 and 12 zero): used when activating. */
  requireFresh?: boolean;
}

/**
 * Validator checks documents of one platform against the policy it was made with. It never throws
 * for a bad document: every problem is a failed check with a detail naming what was wrong.
 */
export interface Validator {
  readonly platform: string;
  readonly oid: string;
  validate(document: Uint8Array, binding: Binding): Promise<Verdict>;
}

/** verdictOf builds a Verdict from checks. */
export function verdictOf(platform: string, checks: Check[], facts: Record<string, string> = {}): Verdict {
  const ok = checks.every((c) => c.status !== "failed") && checks.some((c) => c.status === "passed");
  return { platform, ok, checks, facts };
}

/** firstFailure returns "check: detail" for the first failed check, for error messages. */
export function firstFailure(v: Verdict): string | undefined {
  const c = v.checks.find((x) => x.status === "failed");
  return c ? `${c.name}: ${c.detail ?? "failed"}` : undefined;
}
