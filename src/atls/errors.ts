import type { Verdict } from "../attestation/attestation.js";
/**
 * Typed errors of attested TLS. Every failure names the check that failed, so the admin sees
 * *why* a peer was refused (DESIGN.md "Attested TLS"), and says whether a retry can help.
 */

/**
 * ATLSCheck names the check an aTLS handshake failed. Besides the values listed, `check` may be the
 * name of a validator's failed check (e.g. "nonce", "userData", "signature", "fresh marker", a PCR
 * check), reported as `aTLS: <platform> <check>: <detail>`.
 */
export type ATLSCheck =
  /** TCP connection to the endpoint failed (refused, unreachable). Retryable. */
  | "connect"
  /** no answer within the caller's time limit. Retryable. */
  | "timeout"
  /** the TLS handshake itself failed: the server refused our nonce, served no certificate, or closed. Retryable. */
  | "handshake"
  /** the peer certificate is missing or not parseable. */
  | "certificate"
  /** the certificate is not self-issued or its signature does not verify with its own key. */
  | "self-signature"
  /** the certificate is not valid now (expired or not yet valid). */
  | "validity"
  /** the certificate key is not an EC P-256 key. */
  | "key"
  /** the certificate carries no attestation extension at all. */
  | "extension"
  /** the certificate's attestation extension is for a platform no validator handles. */
  | "platform"
  /** a validator threw instead of returning a verdict. */
  | "validator"
  /** the server did not negotiate ALPN "h2". */
  | "alpn"
  /** the caller's onVerified hook refused the verified evidence. */
  | "policy"
  | (string & {});

const retryableChecks = new Set<string>(["connect", "timeout", "handshake"]);

/**
 * ATLSError is the one error type aTLS clients raise. `message` always starts with "aTLS: " and
 * says which check failed and why; `check` names the check for programs. `toString()` returns the
 * message alone so that grpc-js, which renders connection failures with `${error}`, puts exactly it
 * in the RPC status details.
 */
export class ATLSError extends Error {
  /** check names the failed check (see ATLSCheck). */
  readonly check: ATLSCheck;
  /** retryable says whether connecting again may succeed without a change on either side. */
  readonly retryable: boolean;
  /** verdict is the validator's full answer when the failure was a failed check (for display). */
  readonly verdict: Verdict | undefined;

  /** `detail` is the message after the "aTLS: " prefix. */
  constructor(check: ATLSCheck, detail: string, options?: { cause?: unknown; retryable?: boolean; verdict?: Verdict }) {
    super(`aTLS: ${detail}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ATLSError";
    this.check = check;
    this.retryable = options?.retryable ?? retryableChecks.has(check);
    this.verdict = options?.verdict;
  }

  override toString(): string {
    return this.message;
  }
}

/**
 * atlsReasonOf extracts the aTLS failure ("aTLS: …") from a gRPC status details string, or returns
 * undefined when the details carry none. grpc-js reports a failed connection as UNAVAILABLE with
 * details `No connection established. Last error: aTLS: …. Resolution note: …`; RPC layers use this
 * to show the admin the aTLS reason as one line.
 */
export function atlsReasonOf(details: string): string | undefined {
  const start = details.indexOf("aTLS: ");
  if (start < 0) return undefined;
  let reason = details.slice(start);
  const note = reason.indexOf(". Resolution note:");
  if (note >= 0) reason = reason.slice(0, note);
  return reason.trim();
}
