import { crashPoint } from "../shared/crash.js";
import type { ClusterStore } from "./cluster-store.js";
import { CoordinatorCredential } from "./coordinator-auth.js";
import { errorMessage, InvalidArgumentError } from "./errors.js";
import { checkDiskUUID, deriveOwnerID, stateDiskKey } from "./keys.js";
import type { Logger } from "../shared/logger.js";
import type { PeerRecord } from "./peer.js";
import type { PeerClient } from "./remote.js";
import type { StoreMembers } from "./store-members.js";
import { parseEndpoint } from "./validate.js";

/** CoordinatorJoinDeps are what the activating Coordinator uses to add another one. */
export interface CoordinatorJoinDeps {
  /** self is this Coordinator's VPN IP: the new record is pending by it until the new Coordinator committed. */
  self: string;
  /** run identifies this Coordinator's process: a restart rolls back only what earlier runs left pending. */
  run: string;
  store: ClusterStore;
  members: StoreMembers | undefined;
  peerClient: PeerClient;
  logger: Logger;
  /** syncVPN applies the store's peer set to the own device (so the new member is reachable). */
  syncVPN(): Promise<void>;
}

/**
 * activateCoordinator makes the fresh peer at `endpoint` a further Coordinator (DESIGN.md
 * "More Coordinators"): it allocates a VPN IP from the Coordinator pool, runs
 * ActivateAsAdditionalCoordinator over aTLS (the peer's evidence is verified before any secret is
 * sent), registers the peer and its disk in one transaction, admits its store member as a learner,
 * hands over the secrets and promotes the member once it runs. Any failure before the peer
 * committed undoes all of it (member, record, IP; a disk whose key went out is retired), so no
 * ghost Coordinator is left. Returns the new Coordinator's record.
 */
export async function activateCoordinator(d: CoordinatorJoinDeps, endpoint: string, progress: { committing: boolean } = { committing: false }): Promise<PeerRecord> {
  const ep = parseEndpoint(endpoint, "coordinatorEndpoint");
  const secrets = await d.store.secrets();
  const credential = CoordinatorCredential.derive(secrets.masterSecret, secrets.clusterID);
  const vpnIP = await d.store.allocateCoordinatorIP();
  let record: PeerRecord | undefined;
  let diskUUID: string | undefined;
  let memberAdded = false;
  let started = false;
  try {
    const snap = await d.store.snapshot();
    const coordinators = snap.peers.filter((p) => p.role === "coordinator");
    await d.peerClient.activateAsAdditionalCoordinator(
      endpoint,
      {
        nodeVPNIP: vpnIP,
        ownerID: deriveOwnerID(secrets.masterSecret),
        clusterID: secrets.clusterID,
        peers: snap.peers,
        coordinatorVPNIPs: coordinators.map((p) => p.vpnIP),
        coordinatorEndpoints: coordinators.map((p) => `${p.publicIP}:${p.pubapiPort}`),
        coordinatorAuthPubKey: credential.publicKey,
      },
      {
        secrets: async (info) => {
          if (info.diskUUID !== "") checkDiskUUID(info.diskUUID);
          const peer: PeerRecord = { role: "coordinator", publicIP: ep.host, vpnIP, vpnPubKey: info.vpnPubKey, wgPort: info.wgPort, pubapiPort: ep.port };
          // Record and disk claim in one transaction: a duplicate key, IP or disk fails here, alone.
          await d.store.putPeer(peer, info.diskUUID || undefined, { pending: { by: d.self, run: d.run } });
          record = peer;
          if (info.diskUUID !== "") diskUUID = info.diskUUID;
          crashPoint("add-coordinator:after-peer-stored");
          await d.syncVPN();
          const storeJoin = d.members ? await d.members.addMember(vpnIP) : "";
          memberAdded = d.members !== undefined;
          crashPoint("add-coordinator:after-member-added");
          progress.committing = true; // the secrets are the new Coordinator's commit point
          return {
            diskKey: diskUUID ? stateDiskKey(secrets.masterSecret, secrets.clusterID, diskUUID) : new Uint8Array(0),
            masterSecret: secrets.masterSecret,
            storeJoin,
          };
        },
        promote: async () => {
          started = true;
          crashPoint("add-coordinator:before-promote");
          await d.members?.promoteMember(vpnIP);
          await d.store.clearPending(vpnIP);
          crashPoint("add-coordinator:after-promote");
        },
      },
    );
  } catch (err) {
    if (!started) await undo(d, vpnIP, record, diskUUID, memberAdded);
    throw err;
  }
  if (!record) throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator ${endpoint}: ended without reporting its info`);
  return record;
}

/**
 * rollBackInterrupted undoes the further-Coordinator activations nobody will finish: those an
 * earlier run of this Coordinator (at d.self) left pending when its process died, and those left
 * by a Coordinator that is no longer in the peer set. Such a peer either never got the secrets
 * (still fresh) or committed without being promoted: its store member and record go (its disk
 * retired), as if the activation had failed. One whose member was promoted already is kept (only
 * the mark goes). Activations of this run are never touched. Returns the VPN IPs rolled back.
 */
export async function rollBackInterrupted(d: CoordinatorJoinDeps): Promise<string[]> {
  const coordinators = new Set((await d.store.snapshot()).peers.filter((p) => p.role === "coordinator").map((p) => p.vpnIP));
  const stale = (await d.store.pending()).filter((p) => (p.by === d.self ? p.run !== d.run : !coordinators.has(p.by)));
  const undone: string[] = [];
  for (const { vpnIP, by } of stale) {
    if (d.members && (await d.members.isVoter(vpnIP))) {
      d.logger.info("a further Coordinator whose activation a crash interrupted had been promoted already: kept", { vpnIP });
      await d.store.clearPending(vpnIP);
      continue;
    }
    d.logger.warn("rolling back the activation of a further Coordinator that a crash interrupted", { vpnIP, by });
    await d.members?.removeMember(vpnIP);
    await d.store.removePeer(vpnIP, { coordinator: true });
    undone.push(vpnIP);
  }
  if (undone.length > 0) await d.syncVPN().catch(() => {});
  return undone;
}

/** undo takes a Coordinator that never committed out again: store member, peer record, VPN IP. */
async function undo(d: CoordinatorJoinDeps, vpnIP: string, record: PeerRecord | undefined, diskUUID: string | undefined, memberAdded: boolean): Promise<void> {
  const log = (what: string) => (e: unknown) => d.logger.error(`undo half-activated Coordinator: ${what}`, { vpnIP, error: errorMessage(e) });
  if (memberAdded) await d.members!.removeMember(vpnIP).catch(log("remove store member"));
  if (record) await d.store.removePeer(vpnIP, { coordinator: true }).catch(log("remove peer"));
  else await d.store.releaseCoordinatorIP(vpnIP, diskUUID).catch(log("release IP"));
  await d.syncVPN().catch(() => {});
}
