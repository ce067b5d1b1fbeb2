import { randomBytes } from "node:crypto";

/**
 * The aTLS nonce travels as the TLS server name (SNI): 32 random bytes as two DNS labels of 32
 * lower-case hex characters each, `<first 16 bytes>.<last 16 bytes>` (DESIGN.md "Attested TLS").
 * That is a valid host name (a label is at most 63 characters), so standard TLS clients such as
 * Python's ssl, OpenSSL's s_client and rustls send it unchanged; the first version used one
 * 64-character label, which they refuse.
 */

/** nonceBytes is the nonce length in bytes. */
export const nonceBytes = 32;

const servernamePattern = /^([0-9a-f]{32})\.([0-9a-f]{32})$/;

/** Nonce is one connection's nonce and its SNI rendering. */
export interface Nonce {
  bytes: Buffer;
  servername: string;
}

/** nonceServername renders 32 nonce bytes as the SNI server name `<hex of 0..16>.<hex of 16..32>`. */
export function nonceServername(bytes: Uint8Array): string {
  if (bytes.length !== nonceBytes) throw new RangeError(`an aTLS nonce is ${nonceBytes} bytes, got ${bytes.length}`);
  const hex = Buffer.from(bytes).toString("hex");
  return `${hex.slice(0, 32)}.${hex.slice(32)}`;
}

/** newNonce returns a fresh random nonce; call it once per connection, never reuse one. */
export function newNonce(): Nonce {
  const bytes = randomBytes(nonceBytes);
  return { bytes, servername: nonceServername(bytes) };
}

/**
 * nonceFromServername returns the nonce carried by an SNI server name, or undefined unless the name
 * is exactly two labels of 32 lower-case hex characters. Upper case, a trailing dot and the old
 * single 64-character label are refused too: the contract fixes one spelling, and anything else (a
 * plain host name, a truncated nonce) must not cost an attestation.
 */
export function nonceFromServername(servername: string | undefined): Buffer | undefined {
  const m = servername === undefined ? null : servernamePattern.exec(servername);
  if (!m) return undefined;
  return Buffer.from(m[1] + m[2], "hex");
}

/** nonceServernameRule describes the accepted server name, for refusal messages. */
export const nonceServernameRule = "two DNS labels of 32 lower-case hex characters (a 32-byte nonce)";
