import type { UpdateFeed } from "./update-feed.js";
import { AdminGate, type AdminGrant, type SignedAdminRequest } from "./admin-auth.js";
import type { CallerContext } from "./caller.js";
import { authorizeCoordinator } from "./caller-auth.js";
import { ClusterStore } from "./cluster-store.js";
import type { Coordinator, ActivationResult, ProgressLog, Removed } from "./coordinator.js";
import { errorMessage, FailedPreconditionError, InternalError, InvalidArgumentError, UnavailableError, wrapError } from "./errors.js";
import { DiskKeyRequest } from "./disk-key-request.js";
import type { Logger } from "../shared/logger.js";
import type { Node } from "./node.js";
import { readStart, restorePeer } from "./peer-restore.js";
import { commitNodeActivation, firstContact, receiveDiskKey, startNodeRole } from "./node-activation.js";
import { KnownCoordinators, type NodeState } from "./node-state.js";
import { checkNodeActivation, checkNodeEndpoints } from "./requests.js";
import type { CoordinatorExchange, NodeActivationRequest, NodeExchange, PeerUpdate } from "./remote.js";
import { checkRecoverySignature } from "./coordinator-auth.js";
import { coordinatorPool } from "./ip-pool.js";
import { PeerState, StateMachine } from "./state.js";
import { checkCoordinatorActivation, commitAdditionalCoordinator, receiveCoordinatorSecrets, resumeFirstCoordinator, setUpFirstCoordinator, startCoordinatorRole, type AdminConfig, type CoordinatorActivation, type CoordinatorActivationDeps } from "./coordinator-activation.js";
import { checkIP } from "./validate.js";
import type { MeshPeerOptions } from "./mesh-peer-options.js";

export type { MeshPeerOptions } from "./mesh-peer-options.js";
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
  readonly #log: Logger;
  #saved: NodeState | undefined;
  #resumed = false;
  readonly #diskKeys: DiskKeyRequest;
  readonly #adminGate: AdminGate;
  /** #reserved names the activation that holds this fresh peer before its commit point (in memory only), or ActivateAsCoordinator while it runs. */
  #reserved: string | undefined;
  /** #clusterKey is the cluster credential's public key of an activated Node. */
  #clusterKey: Buffer | undefined;
  readonly #knownCoordinators: KnownCoordinators;

  private constructor(options: MeshPeerOptions, state: PeerState) {
    this.#o = options;
    this.#sm = new StateMachine(state);
    this.#cluster = new ClusterStore(options.store);
    this.#log = options.logger;
    this.#adminGate = new AdminGate(this.#cluster, options.clock);
    this.#knownCoordinators = new KnownCoordinators(options.nodeState, options.logger);
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
    const saved = await readStart(options);
    if (!saved) {
      // Fresh: whatever this peer's own store holds is from an activation that never reached its commit point.
      await options.discardUncommitted?.();
      return new MeshPeer(options, PeerState.AcceptingInit);
    }
    const peer = new MeshPeer(options, saved.role === "coordinator" ? PeerState.ActivatingNodes : PeerState.NodeWaitingForClusterJoin);
    peer.#saved = saved;
    if (saved.coordinatorAuthPubKey) peer.#clusterKey = Buffer.from(saved.coordinatorAuthPubKey, "base64");
    // A locked state disk waits for its key from the start, before the pubapi serves (see DiskKeyRequest.expect).
    if (options.stateLocked && options.disk) peer.#diskKeys.expect(await options.disk.uuid());
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
    const o = this.#o;
    const roles = { becomeCoordinator: (ip: string) => this.#becomeCoordinator(ip), becomeNode: (ip: string, ips: string[]) => this.#becomeNode(ip, ips) };
    const own = { cluster: this.#cluster, diskKeys: this.#diskKeys, sm: this.#sm, log: this.#log, backoff: (attempt: number) => this.#backoff(attempt) };
    await restorePeer({ ...o, ...own, ...roles, self: `${o.publicIP}:${o.pubapiPort}`, members: o.members, stateLocked: o.stateLocked === true, onStateUnlocked: o.onStateUnlocked }, saved);
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
    checkRecoverySignature(op, this.#clusterKey, ekm, signature);
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
    return this.#adminGate.challenge();
  }

  /** authorizeAdmin checks a signed admin request (Coordinators only; see AdminGate.authorize). */
  async authorizeAdmin(req: SignedAdminRequest, method: string): Promise<AdminGrant> {
    this.#requireCoordinator();
    return this.#adminGate.authorize(req, method);
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
    const checked = checkCoordinatorActivation(req, `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    // A Coordinator (restored, or still restoring: UNAVAILABLE) answers only a re-run of the activation it committed, never while that runs.
    if (this.#saved?.role === "coordinator" || (this.#coordinator && !this.#reserved)) return resumeFirstCoordinator(this.#cluster, this.#requireCoordinator(), req, checked, log);
    this.#sm.require("ActivateAsCoordinator", PeerState.AcceptingInit);
    this.#requireUnreserved("ActivateAsCoordinator");
    this.#sm.advance("ActivateAsCoordinator", PeerState.AcceptingInit, PeerState.ActivatingNodes);
    this.#reserved = "ActivateAsCoordinator";
    try {
      return await setUpFirstCoordinator(this.#activationDeps(), req, checked, (key) => (this.#clusterKey = key), log);
    } catch (err) {
      if (!this.#coordinator) this.#sm.fail();
      throw wrapError("activate as Coordinator", err);
    } finally {
      this.#reserved = undefined;
    }
  }

  /** activateAdditionalNodes activates more Nodes; only an activated Coordinator can, for the admin. */
  async activateAdditionalNodes(grant: AdminGrant, endpoints: string[], log: ProgressLog): Promise<ActivationResult> {
    return this.#activateMore(grant, "ActivateAdditionalNodes", "nodeEndpoints", endpoints, (c, eps) => c.activateNodes(eps, log));
  }

  /** activateAdditionalCoordinators activates further Coordinators for the admin (one at a time). */
  async activateAdditionalCoordinators(grant: AdminGrant, endpoints: string[], log: ProgressLog): Promise<ActivationResult> {
    return this.#activateMore(grant, "ActivateAdditionalCoordinator", "coordinatorEndpoints", endpoints, (c, eps) => c.activateCoordinators(eps, log));
  }

  /** #activateMore runs an admin's activation of more peers; refused with UNAVAILABLE naming the quorum when the shared store cannot commit now. */
  async #activateMore(grant: AdminGrant, method: string, field: string, endpoints: string[], run: (c: Coordinator, endpoints: string[]) => Promise<ActivationResult>): Promise<ActivationResult> {
    grant.use(method);
    this.#sm.require(method, PeerState.ActivatingNodes);
    const checked = checkNodeEndpoints(endpoints, field, `${this.#o.publicIP}:${this.#o.pubapiPort}`);
    if (checked.length === 0) throw new InvalidArgumentError(`${field}: empty`);
    const c = this.#requireCoordinator();
    await c.checkQuorum();
    return run(c, checked);
  }

  /**
   * activateAsAdditionalCoordinator makes this fresh peer a further Coordinator, for a caller proven
   * to be an attested Coordinator on this connection (as activateAsNode). Until the secrets arrive
   * (the commit point) the peer is only reserved in memory. Then it persists its node state, marks
   * the TPM, rotates its disk, brings up its VPN IP and the peer set, starts its store member,
   * waits for the caller to promote it and serves as a Coordinator.
   */
  async activateAsAdditionalCoordinator(caller: CallerContext, req: NodeActivationRequest, exchange: CoordinatorExchange): Promise<void> {
    await this.#activateFresh("ActivateAsAdditionalCoordinator", "Coordinator", caller, () => checkNodeActivation(req, coordinatorPool), PeerState.ActivatingNodes, {
      receive: () => receiveCoordinatorSecrets(this.#o, req, this.#o.wgPort, exchange),
      commit: async (received) => {
        this.#clusterKey = Buffer.from(req.coordinatorAuthPubKey);
        await commitAdditionalCoordinator(this.#activationDeps(), req, received, exchange);
        this.#log.info("activated as an additional Coordinator", { vpnIP: req.nodeVPNIP });
      },
    });
  }

  /**
   * removeNode takes a Node out of the peer set for the admin: its VPN IP is freed, its disk UUID
   * forgotten and the resource version bumped so every device drops it. Returns the new version.
   */
  async removeNode(grant: AdminGrant, vpnIP: string): Promise<Removed> {
    return this.#remove(grant, "RemoveNode", vpnIP);
  }

  /** removeCoordinator takes another Coordinator out for the admin (see Coordinator.removeCoordinator). */
  async removeCoordinator(grant: AdminGrant, vpnIP: string): Promise<Removed> {
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
    return this.#activateFresh("ActivateAsNode", "Node", caller, () => checkNodeActivation(req), PeerState.NodeWaitingForClusterJoin, {
      // Before the commit point: the disk UUID goes out, the key comes back. Nothing changes here.
      receive: () => receiveDiskKey({ ...this.#o, logger: this.#log }, exchange),
      commit: async (key) => {
        this.#clusterKey = Buffer.from(req.coordinatorAuthPubKey);
        await commitNodeActivation({ ...this.#o, logger: this.#log }, req, key);
        this.#becomeNode(req.nodeVPNIP, req.coordinatorVPNIPs);
        return { vpnPubKey: await this.#o.vpn.getPublicKey(), wgPort: this.#o.wgPort };
      },
    });
  }

  /**
   * #activateFresh runs an activation of this fresh peer for a caller that must prove, on its
   * connection, that it is an attested Coordinator. Until `receive` returns (the commit point) the
   * peer is only reserved in memory: a failure leaves it fresh, nothing persisted, the TPM unmarked,
   * and a second activation is refused meanwhile. At the commit point the state moves to `target`
   * and `commit` runs; a failure after it leaves the peer Failed (it may have marked its TPM).
   */
  async #activateFresh<R, T>(
    op: string,
    role: "Node" | "Coordinator",
    caller: CallerContext,
    check: () => void,
    target: PeerState,
    steps: { receive: () => Promise<R>; commit: (received: R) => Promise<T> },
  ): Promise<T> {
    this.#sm.require(op, PeerState.AcceptingInit);
    this.#requireUnreserved(op);
    check();
    await authorizeCoordinator(op, caller, this.#o.callerVerifier, "none");
    // The proof took a while: another activation may have won meanwhile.
    this.#sm.require(op, PeerState.AcceptingInit);
    this.#requireUnreserved(op);
    this.#reserved = op;
    let committed = false;
    try {
      const received = await steps.receive();
      // Commit point: the proven Coordinator delivered what completes the activation.
      this.#sm.advance(op, PeerState.AcceptingInit, target);
      committed = true;
      this.#reserved = undefined;
      return await steps.commit(received);
    } catch (err) {
      if (committed) {
        if (role === "Node" || !this.#coordinator) this.#sm.fail();
      } else this.#log.info(`activation as ${role} abandoned before its commit point: still fresh`, { error: errorMessage(err) });
      throw wrapError(role === "Node" ? "activate as Node" : "activate as additional Coordinator", err);
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
      version = await firstContact(() => node.update(), this.#o.clock, this.#log);
    } catch (err) {
      throw wrapError(`join cluster: reach the vpnapi of ${coordinatorVPNIP} through the VPN`, err);
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
  async getUpdate(resourceVersion: number, callerVPNIP?: string): Promise<PeerUpdate> {
    return this.#requireCoordinator().getUpdate(resourceVersion, callerVPNIP);
  }

  /** updates returns the feed vpnapi WatchUpdates streams are served from (Coordinators only). */
  updates(): UpdateFeed {
    return this.#requireCoordinator().updates;
  }

  /** getDataKey serves vpnapi GetDataKey (Coordinators only) to the registered peer at callerVPNIP (the connection's source). */
  async getDataKey(dataKeyID: string, length: number, callerVPNIP: string | undefined): Promise<Buffer> {
    return this.#requireCoordinator().getDataKey(dataKeyID, length, callerVPNIP);
  }

  /** requestStateDiskKey serves pubapi RequestStateDiskKey (Coordinators only). */
  async requestStateDiskKey(diskUUID: string): Promise<void> {
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

  #activationDeps(): CoordinatorActivationDeps {
    const o = this.#o;
    return { publicIP: o.publicIP, wgPort: o.wgPort, pubapiPort: o.pubapiPort, vpn: o.vpn, disk: o.disk, nodeState: o.nodeState, marker: o.marker, cluster: this.#cluster, members: o.members, becomeCoordinator: (ip) => this.#becomeCoordinator(ip) };
  }

  async #becomeCoordinator(vpnIP: string): Promise<Coordinator> {
    const c = await startCoordinatorRole(this.#o, this.#cluster, vpnIP, (peers) => this.#knownCoordinators.remember(peers));
    this.#coordinator = c;
    c.start();
    // Read now, while the store answers: admin requests are then checked without a store read.
    await this.#adminGate.identity().catch((err: unknown) => this.#log.warn("could not read the admin's key yet", { error: errorMessage(err) }));
    return c;
  }

  #becomeNode(vpnIP: string, coordinatorVPNIPs: string[]): Node {
    this.#node = startNodeRole(this.#o, vpnIP, coordinatorVPNIPs, (peers) => this.#knownCoordinators.remember(peers));
    return this.#node;
  }

  #backoff(attempt: number): number {
    return Math.min(this.#o.updateIntervalMs * 2 ** Math.min(attempt, 6), 60_000);
  }

  /** #requireUnreserved refuses a second activation while one holds this fresh peer before its commit point. */
  #requireUnreserved(operation: string): void {
    if (this.#reserved) throw new FailedPreconditionError(`${operation}: peer is AcceptingInit but reserved by an ongoing ${this.#reserved}`);
  }

  #requireCoordinator(): Coordinator {
    if (this.#coordinator) return this.#coordinator;
    const waiting = this.#diskKeys.waitingFor !== undefined ? " (it waits for its state-disk key after a reboot: meshctl recover delivers it)" : "";
    if (!waiting && this.#saved?.role === "coordinator" && this.#sm.get() === PeerState.ActivatingNodes) {
      throw new UnavailableError("this Coordinator is restoring its role after a restart (its store is opening); try again in a moment");
    }
    throw new FailedPreconditionError(`this peer is ${this.#sm.get()}, not an activated Coordinator${waiting}`);
  }
}
