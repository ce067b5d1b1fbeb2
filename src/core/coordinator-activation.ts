import type { ClusterSecrets, ClusterStore } from "./cluster-store.js";
import { CoordinatorCredential } from "./coordinator-auth.js";
import { checkAdminPubKey } from "./admin-auth.js";
import { Coordinator, type NodeFailure, type ProgressLog } from "./coordinator.js";
import type { StateDisk } from "./disk.js";
import { InternalError, InvalidArgumentError } from "./errors.js";
import { coordinatorPool, ipOf } from "./ip-pool.js";
import { checkMasterSecret, deriveOwnerID, newClusterID } from "./keys.js";
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
 * left AcceptingInit: it starts the store (member), takes the first Coordinator IP, persists the node
 * state with the cluster credential, marks the TPM, stores the secrets and the admin's keys, rotates
 * its own disk and activates the requested Coordinators, then Nodes. `onClusterKey` receives the
 * cluster credential's public key as soon as it exists.
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
  if (d.members) {
    // The store member runs on the VPN IP the first Coordinator always gets.
    await d.vpn.setInterfaceIP(ipOf(coordinatorPool.first));
    await d.members.create(ipOf(coordinatorPool.first), { masterSecret, clusterID });
    log("started this Coordinator's store member (etcd)");
  }
  const vpnIP = await d.cluster.allocateCoordinatorIP();
  if (d.members && vpnIP !== ipOf(coordinatorPool.first)) throw new InternalError(`activate: the new store handed out ${vpnIP} first`);
  // The credential's public key lets this Coordinator check, after a reboot, who delivers its disk key.
  const clusterKey = CoordinatorCredential.derive(masterSecret, clusterID).publicKey;
  onClusterKey(clusterKey);
  await d.nodeState.save({ ...nodeStateOf("coordinator", vpnIP, ownerID, clusterID, [vpnIP], [], []), coordinatorAuthPubKey: clusterKey.toString("base64") });
  await d.marker.mark(ownerID, clusterID);
  log("marked this peer as the Coordinator (TPM PCRs 11 and 12)");
  await d.cluster.putSecrets({ masterSecret, clusterID });
  await d.cluster.putAdminKey(checked.adminPubKey);
  const coordinator = await d.becomeCoordinator(vpnIP);
  await coordinator.rotateOwnDiskKey(log);
  const adminVPNIP = await d.cluster.allocateNodeIP();
  await d.cluster.putPeer({ role: "admin", publicIP: "", vpnIP: adminVPNIP, vpnPubKey: req.adminVPNPubKey, wgPort: 0, pubapiPort: 0 });
  await coordinator.syncVPN();
  const { nodes, coordinators } = checked;
  log(`Coordinator is ${vpnIP}, admin is ${adminVPNIP}; activating ${coordinators.length} more Coordinator(s) and ${nodes.length} Node(s)`);
  // Coordinators first: the Nodes then learn every Coordinator at activation.
  const more = coordinators.length > 0 ? await coordinator.activateCoordinators(coordinators, log) : { activated: [], failed: [] };
  const result = nodes.length > 0 ? await coordinator.activateNodes(nodes, log) : { activated: [], failed: [] };
  return { adminVPNIP, coordinator: coordinator.self, ownerID, clusterID, peers: (await d.cluster.snapshot()).peers, failed: [...more.failed, ...result.failed] };
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
  await d.marker.mark(req.ownerID, req.clusterID);
  if (d.disk) await d.disk.updatePassphrase(received.got.diskKey);
  await d.vpn.setInterfaceIP(req.nodeVPNIP);
  await d.vpn.updatePeers(toVPNPeers(req.peers, req.nodeVPNIP));
  if (d.members) await d.members.join(req.nodeVPNIP, received.secrets, received.got.storeJoin);
  await exchange.memberStarted();
  await d.members?.ready();
  await d.becomeCoordinator(req.nodeVPNIP);
}
