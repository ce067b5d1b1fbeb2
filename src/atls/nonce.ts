import { randomBytes } from "node:crypto";

/**
 * The aTLS nonce travels as the TLS server name (SNI): 32 random bytes as 64 lower-case hex
 * characters. That is longer than a DNS label (63), but TLS and OpenSSL only limit the whole name
 * to 255 bytes, and Node passes it through unchanged on both sides.
 */

/** nonceBytes is the nonce length in bytes. */
export const nonceBytes = 32;

const servernamePattern = /^[0-9a-f]{64}$/;

/** Nonce is one connection's nonce and its SNI rendering. */
export interface Nonce {
  bytes: Buffer;
  servername: string;
}

/** newNonce returns a fresh random nonce; call it once per connection, never reuse one. */
export function newNonce(): Nonce {
  const bytes = randomBytes(nonceBytes);
  return { bytes, servername: bytes.toString("hex") };
}

/**
 * nonceFromServername returns the nonce carried by an SNI server name, or undefined unless the name
 * is exactly 64 lower-case hex characters. Upper case is refused too: the contract fixes one
 * spelling, and anything else (a plain host name, a truncated nonce) must not cost an attestation.
 */
export function nonceFromServername(servername: string | undefined): Buffer | undefined {
  if (servername === undefined || !servernamePattern.test(servername)) return undefined;
  return Buffer.from(servername, "hex");
}
