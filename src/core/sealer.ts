/**
 * KeySealer: the core's view of a TPM that seals small secrets to its boot state (implemented by
 * src/attestation/tpm-seal.ts; a fake in tests). The node state is authenticated with a key sealed
 * this way, so that a host which rewrites the state cannot forge its tag.
 */

/**
 * SealedKey is a sealed secret as stored beside the node state: the sealed object's TPM2B_PUBLIC and
 * TPM2B_PRIVATE (base64) and the SHA-256 PCRs its policy covers. Public data: without this TPM, booted
 * into the same PCR values, it yields nothing.
 */
export interface SealedKey {
  pcrs: number[];
  public: string;
  private: string;
}

/**
 * KeySealer seals secrets of up to 128 bytes so that only this machine's TPM, with the PCRs it
 * seals to unchanged, can unseal them. Implementations must be safe for concurrent use.
 */
export interface KeySealer {
  /** pcrs are the PCRs (SHA-256 bank) new seals are bound to; never the activation markers 11 and 12. */
  readonly pcrs: readonly number[];
  /** seal binds `secret` (1-128 bytes) to the current values of `pcrs`. */
  seal(secret: Uint8Array): Promise<SealedKey>;
  /**
   * unseal returns the secret. It throws PermissionDeniedError naming the failed check when the
   * sealed object is not this TPM's (or was altered), when it is bound to other PCRs than `pcrs`, or
   * when the PCRs no longer hold the values it was sealed to; other failures (TPM unreachable) throw
   * other errors.
   */
  unseal(sealed: SealedKey): Promise<Buffer>;
}

/** checkSealedKey validates a parsed SealedKey (field lengths bound what reaches the TPM) and returns a copy. */
export function checkSealedKey(v: unknown, field = "sealedKey"): SealedKey {
  const o = v as Partial<SealedKey> | null;
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new Error(`${field}: not an object`);
  const pcrs = o.pcrs;
  if (!Array.isArray(pcrs) || pcrs.length === 0 || pcrs.length > 24) throw new Error(`${field}.pcrs: must list 1 to 24 PCRs`);
  if (!pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23) || new Set(pcrs).size !== pcrs.length) {
    throw new Error(`${field}.pcrs: must be distinct integers from 0 to 23`);
  }
  const b64 = (x: unknown, name: string): string => {
    if (typeof x !== "string" || x.length === 0 || x.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(x)) {
      throw new Error(`${field}.${name}: must be base64 of at most 2048 characters`);
    }
    return x;
  };
  return { pcrs: [...pcrs], public: b64(o.public, "public"), private: b64(o.private, "private") };
}
