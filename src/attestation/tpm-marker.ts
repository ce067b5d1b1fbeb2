/**
 * The "initialized" marker in the TPM (DESIGN.md "State machine"): PCR 11 extended with the owner ID
 * and PCR 12 with the cluster ID when a peer leaves AcceptingInit. PCRs only reset with the TPM, so a
 * marked peer never looks fresh again until it reboots, and a fresh peer has both at zero.
 *
 * How an ID is extended: TPM2_PCR_Event(pcr, id). The TPM hashes the ID with each allocated bank's
 * algorithm and extends every bank, so no bank keeps showing zero. In the SHA-256 bank that quotes
 * carry, a marked PCR therefore reads SHA-256(0³² ‖ SHA-256(id)) — see markerPCRValue — which is also
 * what `tpm2_pcrevent 11 <id file>` produces, so a verifier can check whose ID a peer carries.
 */
import { createHash } from "node:crypto";

import { FailedPreconditionError } from "../core/errors.js";
import type { InitMarker, MarkerState } from "../core/marker.js";
import type { Tpm } from "./native.js";

/** ownerPCR holds the owner ID mark. */
export const ownerPCR = 11;
/** clusterPCR holds the cluster ID mark. */
export const clusterPCR = 12;

/** markerIDLength is the length of the owner and cluster IDs (DESIGN.md "Keys and IDs"). */
export const markerIDLength = 32;

/** markerPCRValue is the SHA-256 PCR value after marking a reset PCR with `id`: SHA-256(0³² ‖ SHA-256(id)). */
export function markerPCRValue(id: Uint8Array): Buffer {
  const event = createHash("sha256").update(id).digest();
  return createHash("sha256").update(Buffer.alloc(32)).update(event).digest();
}

function isZero(b: Buffer): boolean {
  return b.every((x) => x === 0);
}

/**
 * TPMMarker keeps the marker in PCRs 11 and 12 of `tpm` (SHA-256 bank). It does not own the Tpm.
 * Calls are serialized per marker, so read-then-extend in mark() is atomic within this process.
 */
export class TPMMarker implements InitMarker {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly tpm: Tpm) {}

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.tail.then(f);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** read: fresh when both PCRs are zero, activated when both are not, inconsistent otherwise. */
  read(): Promise<MarkerState> {
    return this.serial(() => this.readNow());
  }

  private async readNow(): Promise<MarkerState> {
    let values: Map<number, Buffer>;
    try {
      values = await this.tpm.pcrRead([ownerPCR, clusterPCR]);
    } catch (cause) {
      throw new Error(`read TPM marker: ${(cause as Error).message}`, { cause });
    }
    const owner = values.get(ownerPCR)!;
    const cluster = values.get(clusterPCR)!;
    if (isZero(owner) && isZero(cluster)) return { kind: "fresh" };
    if (!isZero(owner) && !isZero(cluster)) return { kind: "activated", ownerMeasurement: owner, clusterMeasurement: cluster };
    const [set, unset] = isZero(owner) ? [`PCR ${clusterPCR} (cluster)`, `PCR ${ownerPCR} (owner)`] : [`PCR ${ownerPCR} (owner)`, `PCR ${clusterPCR} (cluster)`];
    return {
      kind: "inconsistent",
      detail: `${set} is extended but ${unset} is zero: an activation was interrupted or something else extended it; reboot the peer (resetting the TPM) to start over`,
    };
  }

  /**
   * mark extends PCR 11 with ownerID and then PCR 12 with clusterID (each 32 bytes). It refuses with
   * FailedPreconditionError unless the marker reads fresh, so a peer can be marked only once per boot.
   */
  async mark(ownerID: Uint8Array, clusterID: Uint8Array): Promise<void> {
    for (const [name, id] of [["ownerID", ownerID], ["clusterID", clusterID]] as const) {
      if (id.length !== markerIDLength) throw new RangeError(`mark TPM: ${name} must be ${markerIDLength} bytes, got ${id.length}`);
    }
    return this.serial(async () => {
      const state = await this.readNow();
      if (state.kind !== "fresh") throw new FailedPreconditionError(`mark TPM: the marker is already ${state.kind}; a peer is marked only once`);
      try {
        await this.tpm.pcrEvent(ownerPCR, ownerID);
        await this.tpm.pcrEvent(clusterPCR, clusterID);
      } catch (cause) {
        throw new Error(`mark TPM: ${(cause as Error).message}`, { cause });
      }
    });
  }
}
