import { crashPoint } from "../shared/crash.js";
import type { StateDisk } from "./disk.js";
import type { Clock } from "./clock.js";
import { CoreError, errorMessage, InvalidArgumentError } from "./errors.js";
import type { Logger } from "../shared/logger.js";
import type { InitMarker } from "./marker.js";
import type { MeshPeerOptions } from "./mesh-peer-options.js";
import { Node } from "./node.js";
import type { NodeState, NodeStateStore } from "./node-state.js";
import type { PeerRecord } from "./peer.js";
import type { NodeActivationRequest, NodeExchange } from "./remote.js";
import { toVPNPeers } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/** NodeActivationDeps are the side effects a Node's activation has. */
export interface NodeActivationDeps {
  disk: StateDisk | undefined;
  nodeState: NodeStateStore;
  marker: InitMarker;
  vpn: VPN;
  logger: Logger;
}

/**
 * receiveDiskKey is the part of a Node's activation before its commit point: it reports the disk
 * UUID ("" without a disk) and returns the key the Coordinator sent, checked for length. It changes
 * nothing on this peer.
 */
export async function receiveDiskKey(d: NodeActivationDeps, exchange: NodeExchange): Promise<Uint8Array> {
  const uuid = d.disk ? await d.disk.uuid() : "";
  if (!d.disk) d.logger.info("no state disk configured: skipping disk key rotation");
  const key = await exchange.sendDiskUUID(uuid);
  if (d.disk && key.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${key.length}`);
  if (!d.disk && key.length !== 0) throw new InvalidArgumentError("stateDiskKey: this peer has no state disk, expected an empty key");
  return key;
}

/**
 * commitNodeActivation runs a Node's activation from its commit point on: it persists the node state
 * (with the cluster credential), marks the TPM, rotates the disk to `key` and brings up the VPN IP
 * and the peer set. Any failure leaves a marked peer: the caller moves it to Failed.
 */
export async function commitNodeActivation(d: NodeActivationDeps, req: NodeActivationRequest, key: Uint8Array): Promise<void> {
  await d.nodeState.save({
    ...nodeStateOf("node", req.nodeVPNIP, req.ownerID, req.clusterID, req.coordinatorVPNIPs, req.coordinatorEndpoints, req.peers.filter((p) => p.role === "coordinator")),
    coordinatorAuthPubKey: req.coordinatorAuthPubKey.toString("base64"),
  });
  crashPoint("node-activation:after-node-state");
  await d.marker.mark(req.ownerID, req.clusterID);
  crashPoint("node-activation:after-mark");
  if (d.disk) await d.disk.updatePassphrase(key);
  crashPoint("node-activation:after-disk-key");
  await d.vpn.setInterfaceIP(req.nodeVPNIP);
  await d.vpn.updatePeers(toVPNPeers(req.peers, req.nodeVPNIP));
  crashPoint("node-activation:after-vpn");
}

/** nodeStateOf builds the NodeState a peer persists when it leaves AcceptingInit. */
export function nodeStateOf(
  role: NodeState["role"],
  vpnIP: string,
  ownerID: Buffer,
  clusterID: Buffer,
  coordinatorVPNIPs: string[],
  coordinatorEndpoints: string[],
  coordinatorPeers: PeerRecord[],
): NodeState {
  return { role, vpnIP, ownerID: ownerID.toString("hex"), clusterID: clusterID.toString("hex"), coordinatorVPNIPs, coordinatorEndpoints, coordinatorPeers };
}

/** startNodeRole starts following the Coordinators (stream, polls) as the Node at vpnIP. */
export function startNodeRole(o: MeshPeerOptions, vpnIP: string, coordinatorVPNIPs: string[], onPeers: (peers: PeerRecord[]) => Promise<void>): Node {
  const n = new Node({
    vpnIP,
    coordinatorVPNIPs,
    onPeers,
    dial: o.dialCoordinator,
    vpn: o.vpn,
    updateIntervalMs: o.updateIntervalMs,
    clock: o.clock,
    logger: o.logger.child("node"),
  });
  n.start();
  return n;
}

/** joinContactMs bounds how long a joining Node retries its first poll (see firstContact). */
const joinContactMs = 20_000;

/**
 * firstContact runs a Node's first poll through the VPN (JoinCluster), retried for up to 20 s
 * while the Coordinator cannot be reached: the first packets wait for a WireGuard handshake, and a
 * lost handshake initiation is retried by WireGuard only after 5 s, longer than one poll's deadline
 * on a short update interval. The Coordinator's JoinCluster call allows 30 s.
 */
export async function firstContact(poll: () => Promise<number>, clock: Clock, log: Logger): Promise<number> {
  const until = clock.now() + joinContactMs;
  for (;;) {
    try {
      return await poll();
    } catch (err) {
      const transient = err instanceof CoreError && (err.code === "unavailable" || err.code === "deadline-exceeded");
      if (!transient || clock.now() >= until) throw err;
      log.debug("join cluster: the Coordinator's vpnapi not reachable yet; trying again", { error: errorMessage(err) });
      await clock.sleep(500);
    }
  }
}
