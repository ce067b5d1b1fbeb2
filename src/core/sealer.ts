/**
 * KeySealer: the core's view of a TPM that seals small secrets to its boot state (implemented by
 * src/attestation/tpm-seal.ts; a fake in tests). The node state is authenticated with a key sealed
 * this way, so that a host which rewrites the state cannot forge its tag.
 */

export type { SealedKey } from "../shared/shapes.js";
import type { SealedKey } from "../shared/shapes.js";

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

/** checkSealedKey validates a parsed SealedKey; see src/shared/shapes.ts. */
export { checkSealedKey } from "../shared/shapes.js";
