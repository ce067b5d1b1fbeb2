import nacl from "tweetnacl";
import { wgKeyPattern } from "../shared/shapes.js";
import { invalidArgument } from "./errors.js";

/** keyLength is the length in bytes of every WireGuard (Curve25519) key. */
export const keyLength = 32;

/** KeyPair is a WireGuard key pair, both halves base64 as `wg genkey` / `wg pubkey` print them. */
export interface KeyPair {
  privKey: string;
  pubKey: string;
}

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * clampPrivateKey clamps 32 random bytes into a Curve25519 private key in place (as `wg genkey`
 * does) and returns them.
 */
export function clampPrivateKey(key: Uint8Array): Uint8Array {
  if (key.length !== keyLength) throw invalidArgument("privKey", `must be ${keyLength} bytes, got ${key.length}`);
  key[0] &= 248;
  key[31] &= 127;
  key[31] |= 64;
  return key;
}

/** generatePrivateKeyBytes returns a fresh clamped private key from the platform CSPRNG. */
export function generatePrivateKeyBytes(): Uint8Array {
  return clampPrivateKey(nacl.randomBytes(keyLength));
}

/** publicKeyBytes derives the Curve25519 public key of a 32-byte private key. */
export function publicKeyBytes(privKey: Uint8Array): Uint8Array {
  if (privKey.length !== keyLength) throw invalidArgument("privKey", `must be ${keyLength} bytes, got ${privKey.length}`);
  return nacl.scalarMult.base(privKey);
}

/** generateKeyPair returns a fresh key pair, base64, interchangeable with `wg genkey | wg pubkey`. */
export function generateKeyPair(): KeyPair {
  const priv = generatePrivateKeyBytes();
  return { privKey: encodeKey(priv), pubKey: encodeKey(publicKeyBytes(priv)) };
}

/** publicKeyOf derives the base64 public key of a base64 private key (what `wg pubkey` does). */
export function publicKeyOf(privKey: string): string {
  return encodeKey(publicKeyBytes(parseKey(privKey, "privKey")));
}

/** encodeKey renders 32 key bytes as base64 (44 characters). */
export function encodeKey(key: Uint8Array): string {
  if (key.length !== keyLength) throw invalidArgument("key", `must be ${keyLength} bytes, got ${key.length}`);
  return Buffer.from(key).toString("base64");
}

/**
 * parseKey decodes a base64 WireGuard key and returns its 32 bytes. It throws a WireGuardError
 * ("invalid-argument") starting with `field` when the value is not a string, not canonical base64,
 * or not exactly 32 bytes. The message never contains the value (it may be a private key).
 */
export function parseKey(value: unknown, field: string): Uint8Array {
  if (typeof value !== "string") throw invalidArgument(field, `must be a base64 string, got ${typeof value}`);
  const text = value.trim();
  if (text.length === 0) throw invalidArgument(field, "is empty; want a base64 WireGuard key (44 characters)");
  if (!base64Pattern.test(text)) {
    throw invalidArgument(field, `is not valid base64 (${text.length} characters); want a WireGuard key as \`wg genkey\`/\`wg pubkey\` print it`);
  }
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== keyLength) {
    throw invalidArgument(field, `must decode to ${keyLength} bytes, got ${bytes.length}`);
  }
  if (bytes.toString("base64") !== text) throw invalidArgument(field, "is not canonical base64 (non-zero padding bits)");
  return new Uint8Array(bytes);
}


/** checkKey validates a base64 key like parseKey and returns its canonical (trimmed) text. */
export function checkKey(value: unknown, field: string): string {
  if (typeof value === "string" && wgKeyPattern.test(value)) return value; // fast path: 1,000-peer sets
  return encodeKey(parseKey(value, field));
}

/** keyToHex converts a base64 key to the 64 lower-case hex characters the UAPI protocol uses. */
export function keyToHex(key: string, field = "key"): string {
  return Buffer.from(parseKey(key, field)).toString("hex");
}

/** hexToKey converts a 64-character hex key (UAPI) to base64; it throws naming `field` otherwise. */
export function hexToKey(hex: string, field = "key"): string {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw invalidArgument(field, `must be ${keyLength * 2} hex characters, got ${hex.length}`);
  return Buffer.from(hex, "hex").toString("base64");
}
