/**
 * Sealing to the TPM's boot PCRs (native/src/tpm-seal.cc): a secret of up to 128 bytes in a keyedhash
 * object under the owner hierarchy's storage primary key, with authPolicy = TPM2_PolicyPCR over the
 * SHA-256 values of the chosen PCRs at sealing time. Only this TPM can load the object, and only while
 * those PCRs hold the same values can it be unsealed. {@link TPMKeySealer} is core's KeySealer on it.
 */
import { createHash } from "node:crypto";

import { PermissionDeniedError } from "../core/errors.js";
import type { KeySealer, SealedKey } from "../core/sealer.js";
import { NativeError, type Tpm } from "./native.js";
import { clusterPCR, ownerPCR } from "./tpm-marker.js";

/**
 * bootPCRs are the PCRs a reboot of the same machine reproduces: firmware, option ROMs, boot loader,
 * its configuration and the kernel and command line it loaded (PCR 0-9 on a VM). Never 11/12, the
 * activation markers that a reboot resets and meshd extends again.
 */
export const bootPCRs: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/** maxSealedBytes is the most a sealed data object holds (MAX_SYM_DATA). */
export const maxSealedBytes = 128;

/** SealedBlob is a sealed object: its TPM2B_PUBLIC and TPM2B_PRIVATE as the TPM marshals them. */
export interface SealedBlob {
  public: Buffer;
  private: Buffer;
}

/** TPM_CC_PolicyPCR is the command code PolicyPCR extends the policy digest with. */
const ccPolicyPCR = 0x0000017f;

/**
 * pcrPolicyDigest is the authPolicy of an object sealed to `values` (SHA-256 PCR values by index):
 * SHA-256(0³² ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ SHA-256(values in index order)), as TPM 2.0
 * Part 3 §23.7 defines it. For checking what a sealed object is bound to, and for tests.
 */
export function pcrPolicyDigest(values: ReadonlyMap<number, Uint8Array>): Buffer {
  const indices = [...values.keys()].sort((a, b) => a - b);
  const select = Buffer.alloc(3);
  for (const i of indices) select[i >> 3] |= 1 << (i & 7);
  const selection = Buffer.concat([Buffer.from([0, 0, 0, 1, 0x00, 0x0b, 3]), select]);
  const pcrDigest = createHash("sha256");
  for (const i of indices) pcrDigest.update(values.get(i)!);
  const cc = Buffer.alloc(4);
  cc.writeUInt32BE(ccPolicyPCR);
  return createHash("sha256").update(Buffer.alloc(32)).update(cc).update(selection).update(pcrDigest.digest()).digest();
}

/** sealToPCRs seals 1-128 bytes of `data` to the current SHA-256 values of `pcrs`. */
export function sealToPCRs(tpm: Tpm, pcrs: readonly number[], data: Uint8Array): Promise<SealedBlob> {
  return tpm.withRaw("seal", (raw, addon) => addon.tpmSealPcrs(raw, [...pcrs], data));
}

/**
 * unsealFromPCRs loads a sealed object under this TPM's storage key and unseals it in a PolicyPCR
 * session over `pcrs`. Rejects with NativeError: call "Esys_Load" when the object is not this TPM's
 * (or was altered), "Esys_Unseal" when the PCRs differ from the sealed values.
 */
export function unsealFromPCRs(tpm: Tpm, blob: SealedBlob, pcrs: readonly number[]): Promise<Buffer> {
  return tpm.withRaw("unseal", (raw, addon) => addon.tpmUnsealPcrs(raw, blob.public, blob.private, [...pcrs]));
}

/** isTPMFormat1 says whether rc is a TPM format-one error (a parameter, handle or session was bad): the TPM's answer, not a transient state. */
function isTPMFormat1(rc: number | undefined): boolean {
  return rc !== undefined && (rc >>> 16 === 0 || rc >>> 16 === 11) && (rc & 0x80) !== 0;
}

/** TPM_RC_POLICY_FAIL's error number in format one. */
const rcPolicyFail = 0x1d;

/**
 * TPMKeySealer is core's KeySealer on a Tpm: it seals to `pcrs` (default {@link bootPCRs}). It does
 * not own the Tpm. Safe for concurrent use (the Tpm queues operations).
 */
export class TPMKeySealer implements KeySealer {
  readonly pcrs: readonly number[];

  constructor(
    private readonly tpm: Tpm,
    pcrs: readonly number[] = bootPCRs,
  ) {
    if (pcrs.includes(ownerPCR) || pcrs.includes(clusterPCR)) {
      throw new TypeError(`TPMKeySealer: PCR ${ownerPCR} and ${clusterPCR} are the activation markers, reset by a reboot; never seal to them`);
    }
    this.pcrs = [...pcrs];
  }

  async seal(secret: Uint8Array): Promise<SealedKey> {
    const blob = await sealToPCRs(this.tpm, this.pcrs, secret);
    return { pcrs: [...this.pcrs], public: blob.public.toString("base64"), private: blob.private.toString("base64") };
  }

  async unseal(sealed: SealedKey): Promise<Buffer> {
    const want = [...this.pcrs].sort((a, b) => a - b).join(",");
    if ([...sealed.pcrs].sort((a, b) => a - b).join(",") !== want) {
      throw new PermissionDeniedError(`check "sealed to the boot PCRs" failed: the key is sealed to PCRs ${sealed.pcrs.join(",")}, not ${want}`);
    }
    const blob = { public: Buffer.from(sealed.public, "base64"), private: Buffer.from(sealed.private, "base64") };
    try {
      return await unsealFromPCRs(this.tpm, blob, this.pcrs);
    } catch (err) {
      throw unsealError(err, want);
    }
  }
}

/** unsealError names the check a failed unseal stands for; transient and unknown failures pass through. */
function unsealError(err: unknown, pcrs: string): unknown {
  if (err instanceof TypeError || (err instanceof NativeError && err.call.startsWith("Tss2_MU_"))) {
    return new PermissionDeniedError(`check "sealed key well-formed" failed: the sealed MAC key is malformed (${(err as Error).message})`, { cause: err });
  }
  if (!(err instanceof NativeError) || err.retryable || !isTPMFormat1(err.rc)) return err;
  if (err.call === "Esys_Load") {
    return new PermissionDeniedError(`check "sealed by this TPM" failed: the sealed MAC key does not load under this TPM's storage key (it was sealed by another TPM, or altered): ${err.message}`, { cause: err });
  }
  if (err.call === "Esys_Unseal" && (err.rc! & 0x3f) === rcPolicyFail) {
    return new PermissionDeniedError(`check "boot PCRs unchanged" failed: PCRs ${pcrs} no longer hold the values the MAC key was sealed to (the boot chain changed): ${err.message}`, { cause: err });
  }
  return new PermissionDeniedError(`check "unseal the MAC key" failed: the TPM refused: ${err.message}`, { cause: err });
}
