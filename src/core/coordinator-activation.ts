import type { ClusterSecrets, ClusterStore } from "./cluster-store.js";
import { CoordinatorCredential } from "./coordinator-auth.js";
import { checkAdminPubKey } from "./admin-auth.js";
import { Coordinator, type NodeFailure, type ProgressLog } from "./coordinator.js";
import type { StateDisk } from "./disk.js";
import { timingSafeEqual } from "node:crypto";
import { crashPoint } from "../shared/crash.js";
import { InternalError, InvalidArgumentError, PermissionDeniedError } from "./errors.js";
import { coordinatorPool, ipOf } from "./ip-pool.js";
import { checkDiskUUID, checkMasterSecret, deriveOwnerID, newClusterID, stateDiskKey } from "./keys.js";
import type { InitMarker } from "./marker.js";
import { nodeStateOf } from "./node-activation.js";
import type { MeshPeerOptions } from "./mesh-peer-options.js";
import type { NodeStateStore } from "./node-state.js";
import type { PeerRecord } from "./peer.js";
import type { CoordinatorExchange, CoordinatorSecrets, NodeActivationRequest } from "./remote.js";
import { checkNodeEndpoints } from "./requests.js";
import type { StoreMembers } from "./store-members.js";
import { checkWGKey } from "./validate.js";
import { toVPNPeers } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/** CoordinatorActivation is an admin's ActivateAsCoordinator request, validated by the core. */
export interface CoordinatorActivation {
  adminVPNPubKey: string;
  /** adminPubKey is the admin's Ed25519 signing key (32 bytes): later admin RPCs must be signed with it. */
  adminPubKey: Uint8Array;
  masterSecret: Uint8Array;
  nodeEndpoints: string[];
  coordinatorEndpoints: string[];
}

/** AdminConfig is what the admin gets back: enough to write wg0.conf and admin.json. */
export interface AdminConfig {
  adminVPNIP: string;
  coordinator: PeerRecord;
  ownerID: Buffer;
  clusterID: Buffer;
  /** peers is the peer set after activation (admin included), for the admin's WireGuard config. */
  peers: PeerRecord[];
  failed: NodeFailure[];
}

/** CheckedCoordinatorActivation is what checkCoordinatorActivation returns. */
export interface CheckedCoordinatorActivation {
  adminPubKey: Buffer;
  nodes: string[];
  coordinators: string[];
}

/** checkCoordinatorActivation validates an ActivateAsCoordinator request for the peer at `self` (HOST:PORT). */
export function checkCoordinatorActivation(req: CoordinatorActivation, self: string): CheckedCoordinatorActivation {
  checkMasterSecret(req.masterSecret);
  checkWGKey(req.adminVPNPubKey, "adminVPNPubKey");
  const adminPubKey = checkAdminPubKey(req.adminPubKey);
  const nodes = checkNodeEndpoints(req.nodeEndpoints, "nodeEndpoints", self);
  const coordinators = checkNodeEndpoints(req.coordinatorEndpoints, "coordinatorEndpoints", self);
  const twice = coordinators.find((c) => nodes.includes(c));
  if (twice) throw new InvalidArgumentError(`coordinatorEndpoints: ${twice} is also in nodeEndpoints`);
  return { adminPubKey, nodes, coordinators };
}

/**
 * startCoordinatorRole brings up a Coordinator on vpnIP: the address on the device, the vpnapi
 * (onCoordinator), and this peer's own record in the store when it is not there yet. The caller
 * starts it.
 */
export async function startCoordinatorRole(o: MeshPeerOptions, cluster: ClusterStore, vpnIP: string, onPeers: (peers: PeerRecord[]) => Promise<void>): Promise<Coordinator> {
  await o.vpn.setInterfaceIP(vpnIP);
  await o.onCoordinator?.(vpnIP);
  const stored = await cluster.peer(vpnIP);
  const self: PeerRecord = stored ?? { role: "coordinator", publicIP: o.publicIP, vpnIP, vpnPubKey: await o.vpn.getPublicKey(), wgPort: o.wgPort, pubapiPort: o.pubapiPort };
  if (!stored) await cluster.putPeer(self);
  return new Coordinator({
    self,
    store: cluster,
    vpn: o.vpn,
    disk: o.disk,
    peerClient: o.peerClient,
    clock: o.clock,
    logger: o.logger.child("coordinator"),
    updateIntervalMs: o.updateIntervalMs,
    ...(o.activationConcurrency ? { activationConcurrency: o.activationConcurrency } : {}),
    ...(o.members ? { members: o.members } : {}),
    ...(o.events ? { events: o.events } : {}),
    onPeers,
  });
}

/** CoordinatorActivationDeps are the side effects of a peer becoming a Coordinator. */
export interface CoordinatorActivationDeps {
  publicIP: string;
  wgPort: number;
  pubapiPort: number;
  vpn: VPN;
  disk: StateDisk | undefined;
  nodeState: NodeStateStore;
  marker: InitMarker;
  cluster: ClusterStore;
  members: StoreMembers | undefined;
  /** becomeCoordinator starts the Coordinator role on vpnIP (the peer's own record stored). */
  becomeCoordinator(vpnIP: string): Promise<Coordinator>;
}

/**
 * setUpFirstCoordinator runs ActivateAsCoordinator once the request is checked and the peer has
 * left AcceptingInit. Its steps, and what a crash between them leaves (meshd restarted with the
 * same flags):
 *  1. the store member (managed etcd) starts, and one store transaction commits the cluster: the
 *     secrets, the admin's keys, the first Coordinator IP with this peer's record and disk UUID.
 *     A crash up to here leaves a fresh peer (no node state, no marker); it discards what this
 *     peer's own store holds at start (MeshPeerOptions.discardUncommitted).
 *  2. the node state (with the cluster credential): the commit point. From here on a restarted
 *     peer restores itself as the Coordinator from the store, marks the TPM again if needed, and
 *     completes its disk rotation (LUKSDisk.updatePassphrase is idempotent).
 *  3. the TPM marker, 4. the disk rotation to the derived key, 5. the Coordinator role (VPN IP,
 *     vpnapi), 6. further Coordinators, then Nodes (each resumable on its own, see Coordinator).
 * The admin re-runs the same `meshctl activate`: a fresh peer is activated from the start; a
 * Coordinator that committed this very activation (same master secret and admin keys) answers
 * with the admin's config and activates the Nodes not in the peer set yet (resumeFirstCoordinator).
 * `onClusterKey` receives the cluster credential's public key as soon as it exists.
 */
export async function setUpFirstCoordinator(
  d: CoordinatorActivationDeps,
  req: CoordinatorActivation,
  checked: CheckedCoordinatorActivation,
  onClusterKey: (key: Buffer) => void,
  log: ProgressLog,
): Promise<AdminConfig> {
  const masterSecret = Buffer.from(req.masterSecret);
  const ownerID = deriveOwnerID(masterSecret);
  const clusterID = newClusterID();
  const first = ipOf(coordinatorPool.first);
  if (d.members) {
    // The store member runs on the VPN IP the first Coordinator always gets.
    await d.vpn.setInterfaceIP(first);
    await d.members.create(first, { masterSecret, clusterID });
    log("started this Coordinator's store member (etcd)");
    crashPoint("first-coordinator:after-store-member");
  }
  const diskUUID = d.disk ? await d.disk.uuid() : "";
  if (d.disk) checkDiskUUID(diskUUID, "own state disk UUID");
  const self = { role: "coordinator" as const, publicIP: d.publicIP, vpnPubKey: await d.vpn.getPublicKey(), wgPort: d.wgPort, pubapiPort: d.pubapiPort };
  const { vpnIP, adminVPNIP, replaced } = await d.cluster.initCluster({ secrets: { masterSecret, clusterID }, adminPubKey: checked.adminPubKey, adminVPNPubKey: req.adminVPNPubKey, self, diskUUID });
  if (replaced) log("the store held this peer's own activation, interrupted before its commit point: started over");
  if (vpnIP !== first) throw new InternalError(`activate: the new store handed out ${vpnIP} first`);
  crashPoint("first-coordinator:after-store");
  // The credential's public key lets this Coordinator check, after a reboot, who delivers its disk key.
  const clusterKey = CoordinatorCredential.derive(masterSecret, clusterID).publicKey;
  onClusterKey(clusterKey);
  await d.nodeState.save({ ...nodeStateOf("coordinator", vpnIP, ownerID, clusterID, [vpnIP], [], []), coordinatorAuthPubKey: clusterKey.toString("base64") });
  crashPoint("first-coordinator:after-node-state");
  await d.marker.mark(ownerID, clusterID);
  log("marked this peer as the Coordinator (TPM PCRs 11 and 12)");
  crashPoint("first-coordinator:after-mark");
  if (d.disk) {
    await d.disk.updatePassphrase(stateDiskKey(masterSecret, clusterID, diskUUID));
    log("rotated the Coordinator's state-disk key");
  } else log("no state disk configured: no disk key to rotate");
  crashPoint("first-coordinator:after-disk-key");
  const coordinator = await d.becomeCoordinator(vpnIP);
  await coordinator.syncVPN();
  crashPoint("first-coordinator:after-vpn");
  const { nodes, coordinators } = checked;
  log(`Coordinator is ${vpnIP}, admin is ${adminVPNIP}; activating ${coordinators.length} more Coordinator(s) and ${nodes.length} Node(s)`);
  // Coordinators first: the Nodes then learn every Coordinator at activation.
  const more = coordinators.length > 0 ? await coordinator.activateCoordinators(coordinators, log) : { activated: [], failed: [] };
  const result = nodes.length > 0 ? await coordinator.activateNodes(nodes, log) : { activated: [], failed: [] };
  return { adminVPNIP, coordinator: coordinator.self, ownerID, clusterID, peers: (await d.cluster.snapshot()).peers, failed: [...more.failed, ...result.failed] };
}

/**
 * resumeFirstCoordinator answers an ActivateAsCoordinator that this Coordinator committed before
 * (its meshd was restarted since, or the admin's connection broke): only for the same master secret,
 * admin signing key and admin WireGuard key, else PermissionDeniedError. It returns the admin's
 * config and activates nobody: the request is not signed, so meshctl activates the requested peers
 * not in the set yet with admin-signed calls once it has written admin.key (cli/activate.ts).
 */
export async function resumeFirstCoordinator(cluster: ClusterStore, coordinator: Coordinator, req: CoordinatorActivation, checked: CheckedCoordinatorActivation, log: ProgressLog): Promise<AdminConfig> {
  const op = "ActivateAsCoordinator";
  const [{ masterSecret, clusterID }, adminKey, snap] = await Promise.all([cluster.secrets(), cluster.adminKey(), cluster.snapshot()]);
  const given = Buffer.from(req.masterSecret);
  const sameSecret = given.length === masterSecret.length && timingSafeEqual(given, masterSecret);
  const admin = snap.peers.find((p) => p.role === "admin" && p.vpnPubKey === req.adminVPNPubKey);
  if (!sameSecret || !adminKey || !adminKey.equals(checked.adminPubKey) || !admin) {
    throw new PermissionDeniedError(`${op}: this peer is an activated Coordinator, and the request is not the activation it committed (another master secret or other admin keys)`);
  }
  const active = new Set(snap.peers.filter((p) => p.role !== "admin").map((p) => `${p.publicIP}:${p.pubapiPort}`));
  const missing = [...checked.coordinators, ...checked.nodes].filter((e) => !active.has(e));
  log(`resuming the activation this Coordinator committed before (it is ${coordinator.self.vpnIP}, admin is ${admin.vpnIP}); not in the mesh yet: ${missing.join(", ") || "none"}`);
  return { ownerID: deriveOwnerID(masterSecret), clusterID, adminVPNIP: admin.vpnIP, coordinator: coordinator.self, peers: snap.peers, failed: [] };
}

/** ReceivedCoordinatorSecrets is what a further Coordinator got before its commit point, checked. */
export interface ReceivedCoordinatorSecrets {
  secrets: ClusterSecrets;
  got: CoordinatorSecrets;
}

/**
 * receiveCoordinatorSecrets is the part of ActivateAsAdditionalCoordinator before its commit
 * point: it reports this peer's disk UUID, WireGuard key and port and checks what comes back (the
 * disk key's length, and that the master secret is the one of the cluster the proven caller named).
 * It changes nothing on this peer.
 */
export async function receiveCoordinatorSecrets(
  d: Pick<CoordinatorActivationDeps, "vpn" | "disk">,
  req: NodeActivationRequest,
  wgPort: number,
  exchange: CoordinatorExchange,
): Promise<ReceivedCoordinatorSecrets> {
  const uuid = d.disk ? await d.disk.uuid() : "";
  const got = await exchange.sendInfo({ diskUUID: uuid, vpnPubKey: await d.vpn.getPublicKey(), wgPort });
  checkMasterSecret(got.masterSecret);
  if (d.disk && got.diskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${got.diskKey.length}`);
  if (!d.disk && got.diskKey.length !== 0) throw new InvalidArgumentError("stateDiskKey: this peer has no state disk, expected an empty key");
  const secrets = { masterSecret: Buffer.from(got.masterSecret), clusterID: Buffer.from(req.clusterID) };
  if (!deriveOwnerID(secrets.masterSecret).equals(req.ownerID)) throw new InvalidArgumentError("masterSecret: does not belong to the ownerID of initial_request");
  if (!CoordinatorCredential.derive(secrets.masterSecret, secrets.clusterID).publicKey.equals(req.coordinatorAuthPubKey)) {
    throw new InvalidArgumentError("masterSecret: its cluster credential is not coordinatorAuthPubKey of initial_request");
  }
  return { secrets, got };
}

/**
 * commitAdditionalCoordinator runs ActivateAsAdditionalCoordinator from its commit point on: it
 * persists the node state, marks the TPM, rotates the disk, brings up its VPN IP and the peer set,
 * starts its store member and tells the caller, waits until the member is promoted, and starts the
 * Coordinator role. Any failure leaves a marked peer: the caller moves it to Failed.
 */
export async function commitAdditionalCoordinator(d: CoordinatorActivationDeps, req: NodeActivationRequest, received: ReceivedCoordinatorSecrets, exchange: CoordinatorExchange): Promise<void> {
  const coordinatorPeers = req.peers.filter((p) => p.role === "coordinator");
  await d.nodeState.save({
    ...nodeStateOf("coordinator", req.nodeVPNIP, req.ownerID, req.clusterID, req.coordinatorVPNIPs, req.coordinatorEndpoints, coordinatorPeers),
    coordinatorAuthPubKey: req.coordinatorAuthPubKey.toString("base64"),
  });
  crashPoint("additional-coordinator:after-node-state");
  await d.marker.mark(req.ownerID, req.clusterID);
  if (d.disk) await d.disk.updatePassphrase(received.got.diskKey);
  crashPoint("additional-coordinator:after-disk-key");
  await d.vpn.setInterfaceIP(req.nodeVPNIP);
  await d.vpn.updatePeers(toVPNPeers(req.peers, req.nodeVPNIP));
  if (d.members) await d.members.join(req.nodeVPNIP, received.secrets, received.got.storeJoin);
  crashPoint("additional-coordinator:after-member-joined");
  await exchange.memberStarted();
  await d.members?.ready();
  await d.becomeCoordinator(req.nodeVPNIP);
  crashPoint("additional-coordinator:after-role");
}
