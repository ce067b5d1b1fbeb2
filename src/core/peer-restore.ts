import type { Clock } from "./clock.js";
import type { ClusterStore } from "./cluster-store.js";
import type { StateDisk } from "./disk.js";
import type { DiskKeyRequest } from "./disk-key-request.js";
import { CoreError, errorMessage, FailedPreconditionError, InternalError } from "./errors.js";
import { stateDiskKey } from "./keys.js";
import type { Logger } from "../shared/logger.js";
import type { InitMarker } from "./marker.js";
import type { Node } from "./node.js";
import type { NodeState, NodeStateStore } from "./node-state.js";
import { PeerState, type StateMachine } from "./state.js";
import type { StoreMembers } from "./store-members.js";
import { toVPNPeers } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/**
 * readStart reads the node state and the TPM marker at start and returns the node state of a peer
 * activated before, or undefined for a fresh one. An inconsistent marker, or a marker without node
 * state, is refused; a marker the reboot reset is set again before anything else, so the peer can
 * never be activated a second time.
 */
export async function readStart(o: { nodeState: NodeStateStore; marker: InitMarker; logger: Logger }): Promise<NodeState | undefined> {
  const [saved, marker] = await Promise.all([o.nodeState.load(), o.marker.read()]);
  if (marker.kind === "inconsistent") throw new FailedPreconditionError(`start: initialized marker is inconsistent: ${marker.detail}`);
  if (!saved) {
    if (marker.kind === "activated") throw new FailedPreconditionError(`start: the TPM marker says this peer was activated, but ${o.nodeState.path} is missing`);
    o.logger.info("fresh peer: accepting activation");
    return undefined;
  }
  if (marker.kind === "fresh") {
    o.logger.info("activated before and the TPM was reset (reboot): marking it again");
    await o.marker.mark(Buffer.from(saved.ownerID, "hex"), Buffer.from(saved.clusterID, "hex"));
  }
  return saved;
}

/** RestoreDeps is what restoring a rebooted or restarted peer's role uses (MeshPeer supplies them). */
export interface RestoreDeps {
  /** self is this peer's pubapi endpoint (HOST:PORT): a Coordinator does not ask itself for its key. */
  self: string;
  vpn: VPN;
  disk: StateDisk | undefined;
  nodeState: NodeStateStore;
  members: StoreMembers | undefined;
  /** stateLocked: the state disk was locked at start (see MeshPeerOptions.stateLocked). */
  stateLocked: boolean;
  onStateUnlocked: (() => Promise<void>) | undefined;
  cluster: ClusterStore;
  diskKeys: DiskKeyRequest;
  sm: StateMachine;
  clock: Clock;
  log: Logger;
  backoff(attempt: number): number;
  becomeCoordinator(vpnIP: string): Promise<unknown>;
  becomeNode(vpnIP: string, coordinatorVPNIPs: string[]): Node;
}

/**
 * restorePeer brings a previously activated peer back into its role (MeshPeer.resume). A Coordinator
 * with an embedded store is restored before this returns; one whose disk is locked or whose store is
 * shared, and every Node, is restored in the background (retrying with backoff), and a failure there
 * moves the peer to Failed with a log line.
 */
export async function restorePeer(d: RestoreDeps, saved: NodeState): Promise<void> {
  if (saved.role === "coordinator" && !d.stateLocked && !d.members) {
    await restoreCoordinator(d, saved, false);
    return;
  }
  const [work, what] =
    saved.role === "coordinator"
      ? // Its key may have to come from elsewhere, its store member may wait for a majority.
        [d.stateLocked ? restoreLockedCoordinator(d, saved) : restoreCoordinator(d, saved, false), "restoring the Coordinator"]
      : [rejoin(d, saved), "re-join"];
  void work.catch((err: unknown) => {
    d.sm.fail();
    d.log.error(`${what} failed; this peer cannot serve until an operator looks at it`, { error: errorMessage(err) });
  });
}

/**
 * restoreLockedCoordinator waits for the key of the locked state disk, from the other Coordinators
 * the node state names (asked in turn) or from the admin, whichever comes first; then it trusts only
 * the node state inside the opened disk and restores the role from it.
 */
async function restoreLockedCoordinator(d: RestoreDeps, bootstrap: NodeState): Promise<void> {
  const disk = d.disk;
  if (!disk) throw new InternalError("restore Coordinator: the state is locked but there is no state disk");
  const others = bootstrap.coordinatorEndpoints.filter((e) => e !== d.self);
  d.log.warn("the Coordinator's state disk is locked: waiting for its key from another Coordinator or from the admin (meshctl recover)", {
    askingCoordinators: others.length > 0 ? others.join(",") : "(none left: only meshctl recover can deliver it)",
  });
  await d.diskKeys.request(await disk.uuid(), others, { pushOnly: true });
  d.log.info("state disk unlocked with the delivered key");
  const saved = d.nodeState.verified ? await d.nodeState.verified(bootstrap) : bootstrap;
  await d.onStateUnlocked?.();
  await restoreCoordinator(d, saved, true);
}

async function restoreCoordinator(d: RestoreDeps, saved: NodeState, diskOpen: boolean): Promise<void> {
  d.log.info("restoring the Coordinator role", { vpnIP: saved.vpnIP });
  if (d.members) {
    // The store member speaks to the others through the VPN: bring up what the node state remembers.
    await d.vpn.setInterfaceIP(saved.vpnIP);
    await d.vpn.updatePeers(toVPNPeers(saved.coordinatorPeers, saved.vpnIP));
    await d.members.reopen(saved.vpnIP);
    d.log.info("store member (etcd) started again");
  }
  const { masterSecret, clusterID } = await storeRetrying(d, "read the cluster secrets", () => d.cluster.secrets());
  if (d.disk && !diskOpen) {
    // updatePassphrase, not unlock: it also completes a rotation that a crash interrupted after the
    // commit point (the disk still opens with its initial key); on a rotated disk it only checks the key.
    await d.disk.updatePassphrase(stateDiskKey(masterSecret, clusterID, await d.disk.uuid()));
    d.log.info("state disk opens with the derived key");
  }
  await d.becomeCoordinator(saved.vpnIP);
}

async function rejoin(d: RestoreDeps, bootstrap: NodeState): Promise<void> {
  d.log.info("restoring the Node role", { vpnIP: bootstrap.vpnIP });
  let saved = bootstrap;
  if (d.disk) {
    await d.diskKeys.request(await d.disk.uuid(), bootstrap.coordinatorEndpoints);
    d.log.info("state disk unlocked with the key from the Coordinator");
    // From here on trust only the copy inside the disk: the public one is unauthenticated.
    if (d.nodeState.verified) saved = await d.nodeState.verified(bootstrap);
  }
  await d.vpn.setInterfaceIP(saved.vpnIP);
  // The device may have come back empty (reboot): the Coordinators are enough to poll for the rest.
  await d.vpn.updatePeers(toVPNPeers(saved.coordinatorPeers, saved.vpnIP));
  const node = d.becomeNode(saved.vpnIP, saved.coordinatorVPNIPs);
  for (let attempt = 0; d.sm.get() === PeerState.NodeWaitingForClusterJoin; attempt++) {
    try {
      await node.update();
      d.sm.advance("re-join", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
      d.log.info("re-joined the cluster", { resourceVersion: node.resourceVersion });
    } catch (err) {
      d.log.warn("re-join: Coordinator not reachable through the VPN yet", { error: errorMessage(err), attempt });
      await d.clock.sleep(d.backoff(attempt));
    }
  }
}

/**
 * storeRetrying runs a store read a restored Coordinator needs; with a shared store (members) an
 * unavailable store (no majority of members yet) is retried with backoff, anything else thrown.
 */
async function storeRetrying<T>(d: RestoreDeps, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!d.members || !(err instanceof CoreError) || err.code !== "unavailable") throw err;
      d.log.warn(`restore Coordinator: ${what}: the store does not answer yet`, { error: errorMessage(err), attempt });
      await d.clock.sleep(d.backoff(attempt));
    }
  }
}
