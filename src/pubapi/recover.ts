import type { Validator, Verdict } from "../attestation/attestation.js";
import { clusterPCR, markerPCRValue, ownerPCR } from "../attestation/tpm-marker.js";
import { ATLSError } from "../atls/errors.js";
import { CoordinatorCredential } from "../core/coordinator-auth.js";
import { CoreError, FailedPreconditionError, InvalidArgumentError } from "../core/errors.js";
import { checkDiskUUID, stateDiskKey } from "../core/keys.js";
import { unaryCall } from "../rpc/status.js";
import { ProvenChannel } from "./connect.js";
import { pubapiError } from "./errors.js";

/** RecoverOptions are what `meshctl recover` knows: the cluster (admin.json) and the master secret. */
export interface RecoverOptions {
  ownerID: Buffer;
  clusterID: Buffer;
  masterSecret: Buffer;
  /** timeoutMs bounds each call (default 30 s). */
  timeoutMs?: number;
}

/**
 * clusterMarkerCheck returns an aTLS onVerified hook that accepts only evidence whose activation
 * marker names the cluster: PCR 11 = marker(ownerID), PCR 12 = marker(clusterID), from the
 * verified quote. SEV-SNP reports carry no marker, so they are refused with the reason.
 */
export function clusterMarkerCheck(ownerID: Uint8Array, clusterID: Uint8Array): (verdict: Verdict) => void {
  return (verdict) => {
    if (verdict.platform !== "tpm") {
      throw new ATLSError("cluster marker", `${verdict.platform} cluster marker: this evidence carries no activation marker (TPM PCRs ${ownerPCR} and ${clusterPCR}), so it cannot show the cluster`, { retryable: false, verdict });
    }
    const problems: string[] = [];
    for (const [pcr, id, what] of [[ownerPCR, ownerID, "ownerId"], [clusterPCR, clusterID, "clusterId"]] as const) {
      const want = markerPCRValue(id).toString("hex");
      const got = verdict.facts[`pcr${pcr}`];
      if (got === undefined) problems.push(`PCR ${pcr} is not quoted`);
      else if (got !== want) problems.push(`PCR ${pcr} is ${/^0+$/.test(got) ? "zero (a fresh peer)" : got}, not the mark of admin.json's ${what} (${want})`);
    }
    if (problems.length > 0) throw new ATLSError("cluster marker", `tpm cluster marker: ${problems.join("; ")}`, { retryable: false, verdict });
  };
}

/**
 * recoverCoordinator delivers the state-disk key to a rebooted Coordinator that waits for it
 * (`meshctl recover`). Over one aTLS connection whose evidence satisfies `validators` and whose
 * marker names the cluster, it asks which disk the peer waits for (GetState), derives that disk's
 * key from the master secret and sends it with the cluster credential's recovery signature over the
 * connection (RecoverStateDiskKey). Returns the disk's UUID. The key never leaves this function
 * except on that connection.
 */
export async function recoverCoordinator(endpoint: string, validators: readonly Validator[], o: RecoverOptions): Promise<{ diskUUID: string; state: string }> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const credential = CoordinatorCredential.derive(o.masterSecret, o.clusterID);
  const channel = new ProvenChannel(endpoint, validators, undefined, { onVerified: clusterMarkerCheck(o.ownerID, o.clusterID) });
  try {
    const ekm = await channel.keyingMaterial(Date.now() + timeoutMs);
    const st = await unaryCall(channel.client, "GetState", {}, timeoutMs);
    if (st.waitingDiskUuid === "") {
      throw new FailedPreconditionError(`the peer is ${st.state} and waits for no state-disk key: there is nothing to recover`);
    }
    try {
      checkDiskUUID(st.waitingDiskUuid, "waitingDiskUUID");
    } catch (err) {
      throw new InvalidArgumentError(`the peer named a malformed disk UUID: ${(err as Error).message}`);
    }
    await unaryCall(
      channel.client,
      "RecoverStateDiskKey",
      { diskUuid: st.waitingDiskUuid, stateDiskKey: Buffer.from(stateDiskKey(o.masterSecret, o.clusterID, st.waitingDiskUuid)), recoverySignature: credential.signRecovery(ekm) },
      timeoutMs,
    );
    return { diskUUID: st.waitingDiskUuid, state: st.state };
  } catch (err) {
    if (err instanceof CoreError) throw err;
    throw pubapiError(err, `recover ${endpoint}`);
  } finally {
    channel.close();
  }
}
