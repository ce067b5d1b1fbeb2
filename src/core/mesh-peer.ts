import type { Clock } from "./clock.js";
import { ClusterStore } from "./cluster-store.js";
import { Coordinator, type ActivationResult, type NodeFailure, type ProgressLog } from "./coordinator.js";
import type { StateDisk } from "./disk.js";
import { CoreError, errorMessage, FailedPreconditionError, InternalError, InvalidArgumentError } from "./errors.js";
import { checkMasterSecret, deriveOwnerID, newClusterID } from "./keys.js";
import type { Logger } from "./logger.js";
import type { InitMarker } from "./marker.js";
import { Node } from "./node.js";
import type { NodeState, NodeStateFile } from "./node-state.js";
import type { PeerRecord } from "./peer.js";
import { checkNodeActivation, checkNodeEndpoints } from "./requests.js";
import type { CoordinatorDialer, NodeActivationRequest, NodeExchange, PeerClient, PeerUpdate } from "./remote.js";
import { PeerState, StateMachine } from "./state.js";
import type { Store } from "./store.js";
import { checkWGKey } from "./validate.js";
import { toVPNPeers } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/** MeshPeerOptions wires a peer (one per meshd). Every side effect comes in through these. */
export interface MeshPeerOptions {
  /** publicIP is where other peers reach this peer's pubapi and WireGuard port. */
  publicIP: string;
  pubapiPort: number;
  wgPort: number;
  vpn: VPN;
  /** disk is the LUKS2 state disk; undefined skips disk steps (with a log line). */
  disk: StateDisk | undefined;
  marker: InitMarker;
  nodeState: NodeStateFile;
  /** store is used once the peer is a Coordinator. The MeshPeer does not close it. */
  store: Store;
  peerClient: PeerClient;
  dialCoordinator: CoordinatorDialer;
  updateIntervalMs: number;
  activationConcurrency?: number;
  /** onCoordinator runs once the peer has its Coordinator VPN IP (meshd starts the vpnapi there). */
  onCoordinator?: (vpnIP: string) => Promise<void>;
  clock: Clock;
  logger: Logger;
}

/** CoordinatorActivation is an admin's ActivateAsCoordinator request, validated by the core. */
export interface CoordinatorActivation {
  adminVPNPubKey: string;
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

/**
 * MeshPeer is one peer's logic: its state machine and, once activated, its Coordinator or Node
 * role. Transports (pubapi, vpnapi) call it; it never speaks gRPC itself. Safe for concurrent use:
 * every state change is a synchronous check-and-set, so of two concurrent activations exactly one wins.
 */
export class MeshPeer {
  readonly #o: MeshPeerOptions;
  readonly #sm: StateMachine;
  readonly #cluster: ClusterStore;
  #coordinator: Coordinator | undefined;
  #node: Node | undefined;
  #log: Logger;

  private constructor(options: MeshPeerOptions, state: PeerState) {
    this.#o = options;
    this.#sm = new StateMachine(state);
    this.#cluster = new ClusterStore(options.store);
    this.#log = options.logger;
  }

  /**
   * start reads the node state and the TPM marker and returns a peer that is either fresh
   * (AcceptingInit) or restored into its earlier role. An inconsistent marker is refused.
   */
  static async start(options: MeshPeerOptions): Promise<MeshPeer> {
    const [saved, marker] = await Promise.all([options.nodeState.load(), options.marker.read()]);
    if (marker.kind === "inconsistent") throw new FailedPreconditionError(`start: initialized marker is inconsistent: ${marker.detail}`);
    if (marker.kind === "fresh") {
      if (saved) throw new FailedPreconditionError(`start: ${options.nodeState.path} says this peer was activated, but its TPM marker is fresh (was the TPM reset?)`);
      options.logger.info("fresh peer: accepting activation");
      return new MeshPeer(options, PeerState.AcceptingInit);
    }
    if (!saved) throw new FailedPreconditionError(`start: the TPM marker says this peer was activated, but ${options.nodeState.path} is missing`);
    if (saved.role === "coordinator") {
      const peer = new MeshPeer(options, PeerState.ActivatingNodes);
      await peer.#restoreCoordinator(saved);
      return peer;
    }
    const peer = new MeshPeer(options, PeerState.NodeWaitingForClusterJoin);
    await peer.#restoreNode(saved);
    return peer;
  }

  /** state returns the current state. */
  get state(): PeerState {
    return this.#sm.get();
  }

  /** getVPNPublicKey returns this peer's WireGuard public key. */
  getVPNPublicKey(): Promise<string> {
    return this.#o.vpn.getPublicKey();
  }

  /** activateAsCoordinator makes this fresh peer the Coordinator and activates the given Nodes. */
  async activateAsCoordinator(req: CoordinatorActivation, log: ProgressLog): Promise<AdminConfig> {
    this.#sm.require("ActivateAsCoordinator", PeerState.AcceptingInit);
    checkMasterSecret(req.masterSecret);
    checkWGKey(req.adminVPNPubKey, "adminVPNPubKey");
    const nodes = checkNodeEndpoints(req.nodeEndpoints, "nodeEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    if (req.coordinatorEndpoints.length > 0) {
      throw new FailedPreconditionError("coordinatorEndpoints: activating additional Coordinators is not supported yet");
    }
    this.#sm.advance("ActivateAsCoordinator", PeerState.AcceptingInit, PeerState.ActivatingNodes);
    try {
      const masterSecret = Buffer.from(req.masterSecret);
      const ownerID = deriveOwnerID(masterSecret);
      const clusterID = newClusterID();
      const vpnIP = await this.#cluster.allocateCoordinatorIP();
      await this.#o.nodeState.save(nodeStateOf("coordinator", vpnIP, ownerID, clusterID, [vpnIP], []));
      await this.#o.marker.mark(ownerID, clusterID);
      log("marked this peer as the Coordinator (TPM PCRs 11 and 12)");
      await this.#cluster.putSecrets({ masterSecret, clusterID });
      const coordinator = await this.#becomeCoordinator(vpnIP);
      await coordinator.rotateOwnDiskKey(log);
      const adminVPNIP = await this.#cluster.allocateNodeIP();
      await this.#cluster.putPeer({ role: "admin", publicIP: "", vpnIP: adminVPNIP, vpnPubKey: req.adminVPNPubKey, wgPort: 0, pubapiPort: 0 });
      await coordinator.syncVPN();
      log(`Coordinator is ${vpnIP}, admin is ${adminVPNIP}; activating ${nodes.length} Node(s)`);
      const result = nodes.length > 0 ? await coordinator.activateNodes(nodes, log) : { activated: [], failed: [] };
      return { adminVPNIP, coordinator: coordinator.self, ownerID, clusterID, peers: (await this.#cluster.snapshot()).peers, failed: result.failed };
    } catch (err) {
      if (!this.#coordinator) this.#sm.fail();
      throw wrap("activate as Coordinator", err);
    }
  }

  /** activateAdditionalNodes activates more Nodes; only an activated Coordinator can. */
  async activateAdditionalNodes(endpoints: string[], log: ProgressLog): Promise<ActivationResult> {
    this.#sm.require("ActivateAdditionalNodes", PeerState.ActivatingNodes);
    const nodes = checkNodeEndpoints(endpoints, "nodeEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    if (nodes.length === 0) throw new InvalidArgumentError("nodeEndpoints: empty");
    return this.#requireCoordinator().activateNodes(nodes, log);
  }

  /**
   * activateAsNode makes this fresh peer a Node: it persists and marks first, trades its disk UUID
   * for its disk key, rotates the disk, brings up its VPN IP and returns its WireGuard public key.
   */
  async activateAsNode(req: NodeActivationRequest, exchange: NodeExchange): Promise<{ vpnPubKey: string; wgPort: number }> {
    this.#sm.require("ActivateAsNode", PeerState.AcceptingInit);
    checkNodeActivation(req);
    this.#sm.advance("ActivateAsNode", PeerState.AcceptingInit, PeerState.NodeWaitingForClusterJoin);
    try {
      await this.#o.nodeState.save(
        nodeStateOf("node", req.nodeVPNIP, req.ownerID, req.clusterID, req.coordinatorVPNIPs, req.coordinatorEndpoints),
      );
      await this.#o.marker.mark(req.ownerID, req.clusterID);
      const disk = this.#o.disk;
      const uuid = disk ? await disk.uuid() : "";
      if (!disk) this.#log.info("no state disk configured: skipping disk key rotation");
      const key = await exchange.sendDiskUUID(uuid);
      if (disk) {
        if (key.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${key.length}`);
        await disk.updatePassphrase(key);
      } else if (key.length !== 0) {
        throw new InvalidArgumentError("stateDiskKey: this peer has no state disk, expected an empty key");
      }
      await this.#o.vpn.setInterfaceIP(req.nodeVPNIP);
      await this.#o.vpn.updatePeers(toVPNPeers(req.peers, req.nodeVPNIP));
      this.#becomeNode(req.nodeVPNIP, req.coordinatorVPNIPs);
      return { vpnPubKey: await this.#o.vpn.getPublicKey(), wgPort: this.#o.wgPort };
    } catch (err) {
      this.#sm.fail();
      throw wrap("activate as Node", err);
    }
  }

  /** joinCluster polls the Coordinator's vpnapi through the VPN once; on success the peer is IsNode. */
  async joinCluster(coordinatorVPNIP: string): Promise<number> {
    this.#sm.require("JoinCluster", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
    const node = this.#node;
    if (!node) throw new InternalError("JoinCluster: Node role missing");
    let version: number;
    try {
      version = await node.update();
    } catch (err) {
      throw wrap(`join cluster: reach the vpnapi of ${coordinatorVPNIP} through the VPN`, err);
    }
    if (this.#sm.get() === PeerState.NodeWaitingForClusterJoin) {
      this.#sm.advance("JoinCluster", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
      this.#log.info("joined the cluster", { resourceVersion: version });
    }
    return version;
  }

  /** triggerNodeUpdate polls the vpnapi now (a Coordinator's hint that the peer set changed). */
  async triggerNodeUpdate(): Promise<number> {
    this.#sm.require("TriggerNodeUpdate", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
    return this.#node!.update();
  }

  /** getUpdate serves vpnapi GetUpdate (Coordinators only). */
  getUpdate(resourceVersion: number, callerVPNIP?: string): Promise<PeerUpdate> {
    return this.#requireCoordinator().getUpdate(resourceVersion, callerVPNIP);
  }

  /** getDataKey serves vpnapi GetDataKey (Coordinators only). */
  getDataKey(dataKeyID: string, length: number): Promise<Buffer> {
    return this.#requireCoordinator().getDataKey(dataKeyID, length);
  }

  /** requestStateDiskKey serves pubapi RequestStateDiskKey (Coordinators only). */
  requestStateDiskKey(diskUUID: string): Promise<void> {
    return this.#requireCoordinator().requestStateDiskKey(diskUUID);
  }

  /** coordinatorVPNIP is the Coordinator's VPN IP, or undefined when this peer is no Coordinator. */
  get coordinatorVPNIP(): string | undefined {
    return this.#coordinator?.self.vpnIP;
  }

  /** lastSeen returns each peer's last vpnapi poll time (Coordinators only). */
  lastSeen(): ReadonlyMap<string, number> {
    return this.#coordinator?.lastSeen() ?? new Map();
  }

  /** close stops background work. */
  close(): void {
    this.#coordinator?.close();
    this.#node?.close();
  }

  async #becomeCoordinator(vpnIP: string): Promise<Coordinator> {
    await this.#o.vpn.setInterfaceIP(vpnIP);
    await this.#o.onCoordinator?.(vpnIP);
    const self: PeerRecord = {
      role: "coordinator",
      publicIP: this.#o.publicIP,
      vpnIP,
      vpnPubKey: await this.#o.vpn.getPublicKey(),
      wgPort: this.#o.wgPort,
      pubapiPort: this.#o.pubapiPort,
    };
    if (!(await this.#cluster.peer(vpnIP))) await this.#cluster.putPeer(self);
    const c = new Coordinator({
      self,
      store: this.#cluster,
      vpn: this.#o.vpn,
      disk: this.#o.disk,
      peerClient: this.#o.peerClient,
      clock: this.#o.clock,
      logger: this.#o.logger.child("coordinator"),
      updateIntervalMs: this.#o.updateIntervalMs,
      ...(this.#o.activationConcurrency ? { activationConcurrency: this.#o.activationConcurrency } : {}),
    });
    this.#coordinator = c;
    c.start();
    return c;
  }

  #becomeNode(vpnIP: string, coordinatorVPNIPs: string[]): Node {
    const n = new Node({
      vpnIP,
      coordinatorVPNIPs,
      dial: this.#o.dialCoordinator,
      vpn: this.#o.vpn,
      updateIntervalMs: this.#o.updateIntervalMs,
      clock: this.#o.clock,
      logger: this.#o.logger.child("node"),
    });
    this.#node = n;
    n.start();
    return n;
  }

  async #restoreCoordinator(saved: NodeState): Promise<void> {
    this.#log.info("restoring the Coordinator role", { vpnIP: saved.vpnIP });
    await this.#cluster.secrets();
    await this.#becomeCoordinator(saved.vpnIP);
  }

  async #restoreNode(saved: NodeState): Promise<void> {
    this.#log.info("restoring the Node role", { vpnIP: saved.vpnIP });
    await this.#o.vpn.setInterfaceIP(saved.vpnIP);
    const node = this.#becomeNode(saved.vpnIP, saved.coordinatorVPNIPs);
    void (async () => {
      for (let attempt = 0; this.#sm.get() === PeerState.NodeWaitingForClusterJoin; attempt++) {
        try {
          await node.update();
          this.#sm.advance("re-join", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
          this.#log.info("re-joined the cluster", { resourceVersion: node.resourceVersion });
        } catch (err) {
          this.#log.warn("re-join: Coordinator not reachable yet", { error: errorMessage(err), attempt });
          await this.#o.clock.sleep(Math.min(this.#o.updateIntervalMs * 2 ** Math.min(attempt, 6), 60_000));
        }
      }
    })();
  }

  #requireCoordinator(): Coordinator {
    if (!this.#coordinator) throw new FailedPreconditionError(`this peer is ${this.#sm.get()}, not an activated Coordinator`);
    return this.#coordinator;
  }
}

function nodeStateOf(role: NodeState["role"], vpnIP: string, ownerID: Buffer, clusterID: Buffer, coordinatorVPNIPs: string[], coordinatorEndpoints: string[]): NodeState {
  return { role, vpnIP, ownerID: ownerID.toString("hex"), clusterID: clusterID.toString("hex"), coordinatorVPNIPs, coordinatorEndpoints };
}

/** wrap prefixes an error with the operation, keeping its class (and so its status code) when it is a CoreError. */
function wrap(operation: string, err: unknown): Error {
  if (err instanceof CoreError) return new CoreError(err.code, `${operation}: ${err.message}`, { cause: err, retryable: err.retryable });
  return new InternalError(`${operation}: ${errorMessage(err)}`, { cause: err });
}
