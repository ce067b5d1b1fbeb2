import type { UpdateFeed } from "./update-feed.js";
import { AdminChallenges, checkAdminPubKey, type AdminGrant, type SignedAdminRequest } from "./admin-auth.js";
import type { CallerContext, CallerVerifier } from "./caller.js";
import { authorizeCoordinator } from "./caller-auth.js";
import type { Clock } from "./clock.js";
import { ClusterStore } from "./cluster-store.js";
import { Coordinator, type ActivationResult, type ProgressLog, type Removed } from "./coordinator.js";
import type { StateDisk } from "./disk.js";
import { CoreError, errorMessage, FailedPreconditionError, InternalError, InvalidArgumentError, PermissionDeniedError } from "./errors.js";
import { DiskKeyRequest } from "./disk-key-request.js";
import { checkMasterSecret, deriveOwnerID, newClusterID } from "./keys.js";
import type { Logger } from "./logger.js";
import type { InitMarker } from "./marker.js";
import { Node } from "./node.js";
import { restorePeer } from "./peer-restore.js";
import { commitNodeActivation, nodeStateOf, receiveDiskKey } from "./node-activation.js";
import type { NodeState, NodeStateStore } from "./node-state.js";
import type { PeerRecord } from "./peer.js";
import { checkNodeActivation, checkNodeEndpoints } from "./requests.js";
import type { CoordinatorDialer, CoordinatorExchange, NodeActivationRequest, NodeExchange, PeerClient, PeerUpdate } from "./remote.js";
import { CoordinatorCredential, verifyRecoverySignature } from "./coordinator-auth.js";
import { coordinatorPool, ipOf } from "./ip-pool.js";
import type { StoreMembers } from "./store-members.js";
import { PeerState, StateMachine } from "./state.js";
import type { AdminConfig, CoordinatorActivation } from "./coordinator-activation.js";
import type { Store } from "./store.js";
import { checkIP, checkWGKey } from "./validate.js";
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
  nodeState: NodeStateStore;
  /**
   * store is used once the peer is a Coordinator. The MeshPeer does not close it. With `members`
   * it must be the DeferredStore those members attach their store to.
   */
  store: Store;
  /** members manages this Coordinator's member of a shared store (managed etcd); undefined: `store` as given. */
  members?: StoreMembers;
  peerClient: PeerClient;
  dialCoordinator: CoordinatorDialer;
  /**
   * callerVerifier checks the attestation a Coordinator proves on its connection before this peer
   * acts for it (ActivateAsNode, JoinCluster, TriggerNodeUpdate, PushStateDiskKey), against this
   * peer's own measurement policy.
   */
  callerVerifier: CallerVerifier;
  updateIntervalMs: number;
  activationConcurrency?: number;
  /**
   * stateLocked says the state disk was locked at start (a reboot with a block-device state
   * volume). A Coordinator then has neither its store nor the master secret until its disk key
   * arrives: from another live Coordinator (RequestStateDiskKey) or from the admin (`meshctl recover`).
   */
  stateLocked?: boolean;
  /** onStateUnlocked runs once a locked state disk opened, before the store is used (meshd opens its embedded store there). */
  onStateUnlocked?: () => Promise<void>;
  /** onCoordinator runs once the peer has its Coordinator VPN IP (meshd starts the vpnapi there). */
  onCoordinator?: (vpnIP: string) => Promise<void>;
  clock: Clock;
  logger: Logger;
}

export type { AdminConfig, CoordinatorActivation } from "./coordinator-activation.js";

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
  #saved: NodeState | undefined;
  #resumed = false;
  readonly #diskKeys: DiskKeyRequest;
  readonly #adminChallenges: AdminChallenges;
  /** #reserved names the activation that holds this fresh peer before its commit point (in memory only). */
  #reserved: string | undefined;
  /** #clusterKey is the cluster credential's public key of an activated Node. */
  #clusterKey: Buffer | undefined;
  /** #admin caches the cluster ID and admin public key once read (see #adminIdentity). */
  #admin: { clusterID: Buffer; adminKey: Buffer } | undefined;
  /** #knownCoordinators is the Coordinator set last written to the node state (JSON). */
  #knownCoordinators: string | undefined;

  private constructor(options: MeshPeerOptions, state: PeerState) {
    this.#o = options;
    this.#sm = new StateMachine(state);
    this.#cluster = new ClusterStore(options.store);
    this.#log = options.logger;
    this.#adminChallenges = new AdminChallenges({ clock: options.clock });
    this.#diskKeys = new DiskKeyRequest({
      peerClient: options.peerClient,
      disk: options.disk,
      clock: options.clock,
      logger: options.logger,
      backoffMs: (attempt) => this.#backoff(attempt),
    });
  }

  /**
   * start reads the node state and the TPM marker and returns a peer that is either fresh
   * (AcceptingInit) or restored into its earlier role. An inconsistent marker is refused.
   */
  static async start(options: MeshPeerOptions): Promise<MeshPeer> {
    const [saved, marker] = await Promise.all([options.nodeState.load(), options.marker.read()]);
    if (marker.kind === "inconsistent") throw new FailedPreconditionError(`start: initialized marker is inconsistent: ${marker.detail}`);
    if (!saved) {
      if (marker.kind === "activated") throw new FailedPreconditionError(`start: the TPM marker says this peer was activated, but ${options.nodeState.path} is missing`);
      options.logger.info("fresh peer: accepting activation");
      return new MeshPeer(options, PeerState.AcceptingInit);
    }
    if (marker.kind === "fresh") {
      // A reboot reset the PCRs: mark them again before anything else, so this peer can never be
      // activated a second time.
      options.logger.info("activated before and the TPM was reset (reboot): marking it again");
      await options.marker.mark(Buffer.from(saved.ownerID, "hex"), Buffer.from(saved.clusterID, "hex"));
    }
    const peer = new MeshPeer(options, saved.role === "coordinator" ? PeerState.ActivatingNodes : PeerState.NodeWaitingForClusterJoin);
    peer.#saved = saved;
    if (saved.coordinatorAuthPubKey) peer.#clusterKey = Buffer.from(saved.coordinatorAuthPubKey, "base64");
    return peer;
  }

  /**
   * resume brings a previously activated peer back into its role: a Coordinator unlocks its own
   * disk and follows the store; a Node gets its disk key from a Coordinator (RequestStateDiskKey),
   * unlocks its disk, brings its VPN IP back and polls until it has the current peer set (then it
   * is IsNode again). Call it once the pubapi serves (the Coordinator pushes the disk key there).
   * A fresh peer has nothing to resume. The Node part runs in the background, retrying with backoff.
   */
  async resume(): Promise<void> {
    const saved = this.#saved;
    if (!saved || this.#resumed) return;
    this.#resumed = true;
    await restorePeer(
      {
        self: `${this.#o.publicIP}:${this.#o.pubapiPort}`,
        vpn: this.#o.vpn,
        disk: this.#o.disk,
        nodeState: this.#o.nodeState,
        members: this.#o.members,
        stateLocked: this.#o.stateLocked === true,
        onStateUnlocked: this.#o.onStateUnlocked,
        cluster: this.#cluster,
        diskKeys: this.#diskKeys,
        sm: this.#sm,
        clock: this.#o.clock,
        log: this.#log,
        backoff: (attempt) => this.#backoff(attempt),
        becomeCoordinator: (vpnIP) => this.#becomeCoordinator(vpnIP),
        becomeNode: (vpnIP, ips) => this.#becomeNode(vpnIP, ips),
      },
      saved,
    );
  }

  /**
   * receiveStateDiskKey takes the disk key a Coordinator pushes after RequestStateDiskKey. It is
   * accepted only from a caller proven (on its connection) to be an attested Coordinator of this
   * Node's cluster, only while this peer waits for the key of exactly that disk, and only if it opens it.
   */
  async receiveStateDiskKey(caller: CallerContext, diskUUID: string, key: Uint8Array): Promise<void> {
    await authorizeCoordinator("PushStateDiskKey", caller, this.#o.callerVerifier, this.#clusterKey);
    return this.#diskKeys.receive(diskUUID, key);
  }

  /**
   * recoverStateDiskKey takes the disk key the admin delivers with `meshctl recover` to a rebooted
   * Coordinator that has no other Coordinator to get it from. The admin holds no attested machine:
   * it proves the master secret instead, by the cluster credential's recovery signature over this
   * call's TLS connection (`ekm`), checked against the credential this Coordinator's node state
   * holds. The key must be for the disk this peer waits for and must open it.
   */
  async recoverStateDiskKey(ekm: Buffer, diskUUID: string, key: Uint8Array, signature: Uint8Array): Promise<void> {
    const op = "RecoverStateDiskKey";
    if (this.#saved?.role !== "coordinator" || this.#diskKeys.waitingFor === undefined) {
      throw new FailedPreconditionError(`${op}: this peer is ${this.#sm.get()}, not a rebooted Coordinator waiting for its disk key`);
    }
    if (!this.#clusterKey) {
      throw new PermissionDeniedError(`${op}: cluster credential: this Coordinator's node state holds none, so it cannot check who sends the key`);
    }
    if (!verifyRecoverySignature(this.#clusterKey, ekm, signature)) {
      throw new PermissionDeniedError(`${op}: cluster credential: the caller did not sign this connection with the credential of this Coordinator's cluster (another master secret, or a signature made for another connection)`);
    }
    await this.#diskKeys.receive(diskUUID, key);
    this.#log.info("the admin delivered the state-disk key (meshctl recover)");
  }

  /** waitingDiskUUID is the UUID of the state disk whose key this peer waits for after a reboot, or undefined. */
  get waitingDiskUUID(): string | undefined {
    return this.#diskKeys.waitingFor;
  }

  /** getAdminChallenge returns a fresh single-use challenge for an admin request (Coordinators only). */
  getAdminChallenge(): Buffer {
    this.#requireCoordinator();
    return this.#adminChallenges.issue();
  }

  /**
   * authorizeAdmin checks an admin request (signature by the stored admin key over the method, this
   * cluster's ID, a single-use challenge of this peer and the request bytes) and returns the grant an admin
   * operation needs. Throws PermissionDeniedError naming the failed check; changes nothing else.
   */
  async authorizeAdmin(req: SignedAdminRequest, method: string): Promise<AdminGrant> {
    this.#requireCoordinator();
    const { clusterID, adminKey } = await this.#adminIdentity();
    return this.#adminChallenges.verify(req, method, adminKey, clusterID);
  }

  /**
   * #adminIdentity is the cluster ID and the admin's public key, read from the store once: both are
   * public and fixed for the cluster's life, so checking an admin's signature needs no store read —
   * with the store's quorum lost the admin then hears that, not a failed read.
   */
  async #adminIdentity(): Promise<{ clusterID: Buffer; adminKey: Buffer | undefined }> {
    if (this.#admin) return this.#admin;
    const [{ clusterID }, adminKey] = await Promise.all([this.#cluster.secrets(), this.#cluster.adminKey()]);
    if (adminKey) this.#admin = { clusterID, adminKey };
    return { clusterID, adminKey };
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
    this.#requireUnreserved("ActivateAsCoordinator");
    checkMasterSecret(req.masterSecret);
    checkWGKey(req.adminVPNPubKey, "adminVPNPubKey");
    const adminPubKey = checkAdminPubKey(req.adminPubKey);
    const nodes = checkNodeEndpoints(req.nodeEndpoints, "nodeEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    const coordinators = checkNodeEndpoints(req.coordinatorEndpoints, "coordinatorEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    const twice = coordinators.find((c) => nodes.includes(c));
    if (twice) throw new InvalidArgumentError(`coordinatorEndpoints: ${twice} is also in nodeEndpoints`);
    this.#sm.advance("ActivateAsCoordinator", PeerState.AcceptingInit, PeerState.ActivatingNodes);
    try {
      const masterSecret = Buffer.from(req.masterSecret);
      const ownerID = deriveOwnerID(masterSecret);
      const clusterID = newClusterID();
      if (this.#o.members) {
        // The store member runs on the VPN IP the first Coordinator always gets.
        await this.#o.vpn.setInterfaceIP(ipOf(coordinatorPool.first));
        await this.#o.members.create(ipOf(coordinatorPool.first), { masterSecret, clusterID });
        log("started this Coordinator's store member (etcd)");
      }
      const vpnIP = await this.#cluster.allocateCoordinatorIP();
      if (this.#o.members && vpnIP !== ipOf(coordinatorPool.first)) throw new InternalError(`activate: the new store handed out ${vpnIP} first`);
      // The credential's public key lets this Coordinator check, after a reboot, who delivers its disk key.
      this.#clusterKey = CoordinatorCredential.derive(masterSecret, clusterID).publicKey;
      await this.#o.nodeState.save({ ...nodeStateOf("coordinator", vpnIP, ownerID, clusterID, [vpnIP], [], []), coordinatorAuthPubKey: this.#clusterKey.toString("base64") });
      await this.#o.marker.mark(ownerID, clusterID);
      log("marked this peer as the Coordinator (TPM PCRs 11 and 12)");
      await this.#cluster.putSecrets({ masterSecret, clusterID });
      await this.#cluster.putAdminKey(adminPubKey);
      const coordinator = await this.#becomeCoordinator(vpnIP);
      await coordinator.rotateOwnDiskKey(log);
      const adminVPNIP = await this.#cluster.allocateNodeIP();
      await this.#cluster.putPeer({ role: "admin", publicIP: "", vpnIP: adminVPNIP, vpnPubKey: req.adminVPNPubKey, wgPort: 0, pubapiPort: 0 });
      await coordinator.syncVPN();
      log(`Coordinator is ${vpnIP}, admin is ${adminVPNIP}; activating ${coordinators.length} more Coordinator(s) and ${nodes.length} Node(s)`);
      // Coordinators first: the Nodes then learn every Coordinator at activation.
      const more = coordinators.length > 0 ? await coordinator.activateCoordinators(coordinators, log) : { activated: [], failed: [] };
      const result = nodes.length > 0 ? await coordinator.activateNodes(nodes, log) : { activated: [], failed: [] };
      return { adminVPNIP, coordinator: coordinator.self, ownerID, clusterID, peers: (await this.#cluster.snapshot()).peers, failed: [...more.failed, ...result.failed] };
    } catch (err) {
      if (!this.#coordinator) this.#sm.fail();
      throw wrap("activate as Coordinator", err);
    }
  }

  /** activateAdditionalNodes activates more Nodes; only an activated Coordinator can, for the admin. */
  async activateAdditionalNodes(grant: AdminGrant, endpoints: string[], log: ProgressLog): Promise<ActivationResult> {
    grant.use("ActivateAdditionalNodes");
    this.#sm.require("ActivateAdditionalNodes", PeerState.ActivatingNodes);
    const nodes = checkNodeEndpoints(endpoints, "nodeEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    if (nodes.length === 0) throw new InvalidArgumentError("nodeEndpoints: empty");
    const c = this.#requireCoordinator();
    await c.checkQuorum();
    return c.activateNodes(nodes, log);
  }

  /**
   * activateAdditionalCoordinators activates further Coordinators for the admin (one at a time);
   * refused with UNAVAILABLE naming the quorum when the shared store cannot commit now.
   */
  async activateAdditionalCoordinators(grant: AdminGrant, endpoints: string[], log: ProgressLog): Promise<ActivationResult> {
    grant.use("ActivateAdditionalCoordinator");
    this.#sm.require("ActivateAdditionalCoordinator", PeerState.ActivatingNodes);
    const coordinators = checkNodeEndpoints(endpoints, "coordinatorEndpoints", `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    if (coordinators.length === 0) throw new InvalidArgumentError("coordinatorEndpoints: empty");
    const c = this.#requireCoordinator();
    await c.checkQuorum();
    return c.activateCoordinators(coordinators, log);
  }

  /**
   * activateAsAdditionalCoordinator makes this fresh peer a further Coordinator, for a caller proven
   * to be an attested Coordinator on this connection (as activateAsNode). Until the secrets arrive
   * (the commit point) the peer is only reserved in memory. Then it persists its node state, marks
   * the TPM, rotates its disk, brings up its VPN IP and the peer set, starts its store member,
   * waits for the caller to promote it and serves as a Coordinator.
   */
  async activateAsAdditionalCoordinator(caller: CallerContext, req: NodeActivationRequest, exchange: CoordinatorExchange): Promise<void> {
    const op = "ActivateAsAdditionalCoordinator";
    this.#sm.require(op, PeerState.AcceptingInit);
    this.#requireUnreserved(op);
    checkNodeActivation(req, coordinatorPool);
    await authorizeCoordinator(op, caller, this.#o.callerVerifier, "none");
    this.#sm.require(op, PeerState.AcceptingInit);
    this.#requireUnreserved(op);
    this.#reserved = op;
    let committed = false;
    try {
      const disk = this.#o.disk;
      const uuid = disk ? await disk.uuid() : "";
      const got = await exchange.sendInfo({ diskUUID: uuid, vpnPubKey: await this.#o.vpn.getPublicKey(), wgPort: this.#o.wgPort });
      checkMasterSecret(got.masterSecret);
      if (disk && got.diskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${got.diskKey.length}`);
      if (!disk && got.diskKey.length !== 0) throw new InvalidArgumentError("stateDiskKey: this peer has no state disk, expected an empty key");
      const secrets = { masterSecret: Buffer.from(got.masterSecret), clusterID: Buffer.from(req.clusterID) };
      // The secrets must be those of the cluster the proven caller named.
      if (!deriveOwnerID(secrets.masterSecret).equals(req.ownerID)) throw new InvalidArgumentError("masterSecret: does not belong to the ownerID of initial_request");
      if (!CoordinatorCredential.derive(secrets.masterSecret, secrets.clusterID).publicKey.equals(req.coordinatorAuthPubKey)) {
        throw new InvalidArgumentError("masterSecret: its cluster credential is not coordinatorAuthPubKey of initial_request");
      }
      // Commit point.
      this.#sm.advance(op, PeerState.AcceptingInit, PeerState.ActivatingNodes);
      committed = true;
      this.#reserved = undefined;
      const coordinatorPeers = req.peers.filter((p) => p.role === "coordinator");
      this.#clusterKey = Buffer.from(req.coordinatorAuthPubKey);
      await this.#o.nodeState.save({
        ...nodeStateOf("coordinator", req.nodeVPNIP, req.ownerID, req.clusterID, req.coordinatorVPNIPs, req.coordinatorEndpoints, coordinatorPeers),
        coordinatorAuthPubKey: this.#clusterKey.toString("base64"),
      });
      await this.#o.marker.mark(req.ownerID, req.clusterID);
      if (disk) await disk.updatePassphrase(got.diskKey);
      await this.#o.vpn.setInterfaceIP(req.nodeVPNIP);
      await this.#o.vpn.updatePeers(toVPNPeers(req.peers, req.nodeVPNIP));
      if (this.#o.members) await this.#o.members.join(req.nodeVPNIP, secrets, got.storeJoin);
      await exchange.memberStarted();
      await this.#o.members?.ready();
      await this.#becomeCoordinator(req.nodeVPNIP);
      this.#log.info("activated as an additional Coordinator", { vpnIP: req.nodeVPNIP });
    } catch (err) {
      if (committed) {
        if (!this.#coordinator) this.#sm.fail();
      } else this.#log.info("activation as Coordinator abandoned before its commit point: still fresh", { error: errorMessage(err) });
      throw wrap("activate as additional Coordinator", err);
    } finally {
      if (!committed) this.#reserved = undefined;
    }
  }

  /**
   * removeNode takes a Node out of the peer set for the admin: its VPN IP is freed, its disk UUID
   * forgotten and the resource version bumped so every device drops it. Returns the new version.
   */
  removeNode(grant: AdminGrant, vpnIP: string): Promise<Removed> {
    return this.#remove(grant, "RemoveNode", vpnIP);
  }

  /** removeCoordinator takes another Coordinator out for the admin (see Coordinator.removeCoordinator). */
  removeCoordinator(grant: AdminGrant, vpnIP: string): Promise<Removed> {
    return this.#remove(grant, "RemoveCoordinator", vpnIP);
  }

  async #remove(grant: AdminGrant, method: "RemoveNode" | "RemoveCoordinator", vpnIP: string): Promise<Removed> {
    grant.use(method);
    checkIP(vpnIP, "vpnIP");
    const c = this.#requireCoordinator();
    await c.checkQuorum();
    return method === "RemoveNode" ? c.removeNode(vpnIP) : c.removeCoordinator(vpnIP);
  }

  /**
   * activateAsNode makes this fresh peer a Node, for a caller proven to be an attested Coordinator
   * on this connection. Until the Coordinator delivers the disk key (the commit point) the peer is
   * only reserved in memory: any failure before leaves it fresh, with nothing persisted and the TPM
   * unmarked. At the commit point it persists its node state and marks the TPM, then rotates its
   * disk, brings up its VPN IP and returns its WireGuard public key.
   */
  async activateAsNode(caller: CallerContext, req: NodeActivationRequest, exchange: NodeExchange): Promise<{ vpnPubKey: string; wgPort: number }> {
    this.#sm.require("ActivateAsNode", PeerState.AcceptingInit);
    this.#requireUnreserved("ActivateAsNode");
    checkNodeActivation(req);
    await authorizeCoordinator("ActivateAsNode", caller, this.#o.callerVerifier, "none");
    this.#sm.require("ActivateAsNode", PeerState.AcceptingInit);
    this.#requireUnreserved("ActivateAsNode");
    this.#reserved = "ActivateAsNode";
    let committed = false;
    try {
      const key = await receiveDiskKey({ ...this.#o, logger: this.#log }, exchange);
      // Commit point: the proven Coordinator delivered the key. From here on this peer is a Node.
      this.#sm.advance("ActivateAsNode", PeerState.AcceptingInit, PeerState.NodeWaitingForClusterJoin);
      committed = true;
      this.#reserved = undefined;
      this.#clusterKey = Buffer.from(req.coordinatorAuthPubKey);
      await commitNodeActivation({ ...this.#o, logger: this.#log }, req, key);
      this.#becomeNode(req.nodeVPNIP, req.coordinatorVPNIPs);
      return { vpnPubKey: await this.#o.vpn.getPublicKey(), wgPort: this.#o.wgPort };
    } catch (err) {
      if (committed) this.#sm.fail();
      else this.#log.info("activation as Node abandoned before its commit point: still fresh", { error: errorMessage(err) });
      throw wrap("activate as Node", err);
    } finally {
      if (!committed) this.#reserved = undefined;
    }
  }

  /** joinCluster polls the Coordinator's vpnapi through the VPN once (for a proven Coordinator of this cluster); on success the peer is IsNode. */
  async joinCluster(caller: CallerContext, coordinatorVPNIP: string): Promise<number> {
    this.#sm.require("JoinCluster", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
    await authorizeCoordinator("JoinCluster", caller, this.#o.callerVerifier, this.#clusterKey);
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

  /** triggerNodeUpdate polls the vpnapi now (a proven Coordinator's hint that the peer set changed). */
  async triggerNodeUpdate(caller: CallerContext): Promise<number> {
    this.#sm.require("TriggerNodeUpdate", PeerState.NodeWaitingForClusterJoin, PeerState.IsNode);
    await authorizeCoordinator("TriggerNodeUpdate", caller, this.#o.callerVerifier, this.#clusterKey);
    return this.#node!.update();
  }

  /** getUpdate serves vpnapi GetUpdate (Coordinators only). */
  getUpdate(resourceVersion: number, callerVPNIP?: string): Promise<PeerUpdate> {
    return this.#requireCoordinator().getUpdate(resourceVersion, callerVPNIP);
  }

  /** updates returns the feed vpnapi WatchUpdates streams are served from (Coordinators only). */
  updates(): UpdateFeed {
    return this.#requireCoordinator().updates;
  }

  /** getDataKey serves vpnapi GetDataKey (Coordinators only) to the registered peer at callerVPNIP (the connection's source). */
  getDataKey(dataKeyID: string, length: number, callerVPNIP: string | undefined): Promise<Buffer> {
    return this.#requireCoordinator().getDataKey(dataKeyID, length, callerVPNIP);
  }

  /** requestStateDiskKey serves pubapi RequestStateDiskKey (Coordinators only). */
  requestStateDiskKey(diskUUID: string): Promise<void> {
    return this.#requireCoordinator().requestStateDiskKey(diskUUID);
  }

  /** nodeResourceVersion is the peer-set version a Node applied last, or undefined when this peer is no Node (yet). */
  get nodeResourceVersion(): number | undefined {
    return this.#node?.resourceVersion;
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
    const stored = await this.#cluster.peer(vpnIP);
    const self: PeerRecord = stored ?? {
      role: "coordinator",
      publicIP: this.#o.publicIP,
      vpnIP,
      vpnPubKey: await this.#o.vpn.getPublicKey(),
      wgPort: this.#o.wgPort,
      pubapiPort: this.#o.pubapiPort,
    };
    if (!stored) await this.#cluster.putPeer(self);
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
      ...(this.#o.members ? { members: this.#o.members } : {}),
      onPeers: (peers) => this.#rememberCoordinators(peers),
    });
    this.#coordinator = c;
    c.start();
    // Read now, while the store answers: admin requests are then checked without a store read.
    await this.#adminIdentity().catch((err: unknown) => this.#log.warn("could not read the admin's key yet", { error: errorMessage(err) }));
    return c;
  }

  #becomeNode(vpnIP: string, coordinatorVPNIPs: string[]): Node {
    const n = new Node({
      vpnIP,
      coordinatorVPNIPs,
      onPeers: (peers) => this.#rememberCoordinators(peers),
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

  /**
   * #rememberCoordinators keeps the node state's Coordinators current (VPN IPs, endpoints, records),
   * so that after a restart this peer can reach every Coordinator there is, not only those of its
   * activation. Failures are logged: the running peer does not depend on them.
   */
  async #rememberCoordinators(peers: PeerRecord[]): Promise<void> {
    const coordinators = peers.filter((p) => p.role === "coordinator").sort((a, b) => (a.vpnIP < b.vpnIP ? -1 : 1));
    const key = JSON.stringify(coordinators);
    if (coordinators.length === 0 || key === this.#knownCoordinators) return;
    try {
      const saved = await this.#o.nodeState.load();
      if (!saved) return;
      await this.#o.nodeState.save({
        ...saved,
        coordinatorVPNIPs: coordinators.map((p) => p.vpnIP),
        coordinatorEndpoints: coordinators.map((p) => `${p.publicIP}:${p.pubapiPort}`),
        coordinatorPeers: coordinators,
      });
      this.#knownCoordinators = key;
    } catch (err) {
      this.#log.warn("could not remember the current Coordinators in the node state", { error: errorMessage(err) });
    }
  }

  #backoff(attempt: number): number {
    return Math.min(this.#o.updateIntervalMs * 2 ** Math.min(attempt, 6), 60_000);
  }

  /** #requireUnreserved refuses a second activation while one holds this fresh peer before its commit point. */
  #requireUnreserved(operation: string): void {
    if (this.#reserved) throw new FailedPreconditionError(`${operation}: peer is AcceptingInit but reserved by an ongoing ${this.#reserved}`);
  }

  #requireCoordinator(): Coordinator {
    if (!this.#coordinator) {
      const waiting = this.#diskKeys.waitingFor !== undefined ? " (it waits for its state-disk key after a reboot: meshctl recover delivers it)" : "";
      throw new FailedPreconditionError(`this peer is ${this.#sm.get()}, not an activated Coordinator${waiting}`);
    }
    return this.#coordinator;
  }
}

/** wrap prefixes an error with the operation, keeping its class (and so its status code) when it is a CoreError. */
function wrap(operation: string, err: unknown): Error {
  if (err instanceof CoreError) return new CoreError(err.code, `${operation}: ${err.message}`, { cause: err, retryable: err.retryable });
  return new InternalError(`${operation}: ${errorMessage(err)}`, { cause: err });
}
