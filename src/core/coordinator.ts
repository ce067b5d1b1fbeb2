import { randomBytes } from "node:crypto";
import type { Clock } from "./clock.js";
import { ClusterStore } from "./cluster-store.js";
import { crashPoint } from "../shared/crash.js";
import type { StateDisk } from "./disk.js";
import { errorMessage, FailedPreconditionError, NotFoundError } from "./errors.js";
import { checkDiskUUID, deriveOwnerID, stateDiskKey } from "./keys.js";
import type { Logger } from "../shared/logger.js";
import type { PeerRecord } from "./peer.js";
import type { PeerClient, PeerUpdate } from "./remote.js";
import { AckTracker } from "./ack-tracker.js";
import { noEvents, type MeshEvents } from "./events.js";
import { KeyRelease } from "./key-release.js";
import { UpdateFeed } from "./update-feed.js";
import { UpdateLoop } from "./update-loop.js";
import { activateCoordinator, rollBackInterrupted, type CoordinatorJoinDeps } from "./coordinator-join.js";
import type { StoreMembers } from "./store-members.js";
import { CoordinatorCredential } from "./coordinator-auth.js";
import { parseEndpoint } from "./validate.js";
import { deviceSync } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/** ProgressLog receives human-readable progress lines for the admin (never secrets). */
export type ProgressLog = (line: string) => void;

/** NodeFailure names a peer that could not be activated and why. */
export interface NodeFailure {
  endpoint: string;
  error: string;
  /**
   * marked: the failure came after the peer was sent what completes its activation (its disk key
   * or the secrets), so it may have passed its commit point and marked its TPM. Such a peer is
   * never activated again as it is: it must be reset (a blank state disk, a reboot) before a retry.
   */
  marked: boolean;
}

/** ActivationProgress is what one activation got to (set as it goes), for naming a failure. */
interface ActivationProgress {
  /** committing: the peer was handed what makes it pass its commit point. */
  committing: boolean;
}

/** ActivationResult is the outcome of activating a batch of Nodes. */
export interface ActivationResult {
  activated: PeerRecord[];
  failed: NodeFailure[];
}

/** CoordinatorOptions wires a Coordinator. */
export interface CoordinatorOptions {
  self: PeerRecord;
  store: ClusterStore;
  vpn: VPN;
  disk: StateDisk | undefined;
  peerClient: PeerClient;
  clock: Clock;
  logger: Logger;
  /** updateIntervalMs is how often the Coordinator re-reads the store (other Coordinators may write it). */
  updateIntervalMs: number;
  /** activationConcurrency bounds how many Nodes are activated at once (default 8). */
  activationConcurrency?: number;
  /** members is the shared store's membership (managed etcd); undefined: one store, no members. */
  members?: StoreMembers;
  /** onPeers runs after every peer set applied to the own device (the peer remembers its Coordinators). */
  onPeers?: (peers: PeerRecord[]) => Promise<void>;
  /** events receives observations for metrics (default: none). */
  events?: MeshEvents;
}

/** triggerWaitMs bounds how long an admin operation waits for the Nodes it told to update. */
const triggerWaitMs = 5_000;

/** Removed is what removing a peer changed: the new resource version and the peer's pubapi endpoint. */
export interface Removed {
  resourceVersion: number;
  endpoint: string;
}

/** endpointOf is the pubapi endpoint of the peer at vpnIP in `peers` ("" when it is not there). */
function endpointOf(peers: readonly PeerRecord[], vpnIP: string): string {
  const p = peers.find((x) => x.vpnIP === vpnIP);
  return p && p.publicIP !== "" ? `${p.publicIP}:${p.pubapiPort}` : "";
}

/**
 * Coordinator is the activated Coordinator role of a peer: it activates Nodes, serves the peer set
 * and derives keys. Its own WireGuard device follows the store through an UpdateLoop. Safe for
 * concurrent use; close() stops the loop.
 */
export class Coordinator {
  readonly #o: CoordinatorOptions;
  readonly #loop: UpdateLoop;
  readonly #heartbeats = new Map<string, number>();
  #unwatch: (() => void) | undefined;
  #closed = false;
  /** #run identifies this process's run of the Coordinator (see rollBackInterrupted). */
  readonly #run = randomBytes(8).toString("hex");
  readonly #feed: UpdateFeed;
  readonly #keys: KeyRelease;

  constructor(options: CoordinatorOptions) {
    this.#o = options;
    const events = options.events ?? noEvents;
    this.#keys = new KeyRelease({ store: options.store, peerClient: options.peerClient, logger: options.logger, events, ...(options.members ? { members: options.members } : {}) });
    this.#feed = new UpdateFeed(options.clock, undefined, new AckTracker(undefined, events.propagation?.bind(events)));
    this.#loop = new UpdateLoop({
      fetch: (v) => this.getUpdate(v),
      ...deviceSync(options, options.self.vpnIP, "vpn-sync", (peers) => options.onPeers?.(peers)),
      // Re-reading its own store is cheap: after a store outage a Coordinator is back within a few intervals.
      maxBackoffMs: 4 * options.updateIntervalMs,
    });
  }

  /** self is this Coordinator's peer record. */
  get self(): PeerRecord {
    return this.#o.self;
  }

  /**
   * start begins following the store: on every change another Coordinator makes (a store watch,
   * with managed members) and on the update interval as a fallback.
   */
  start(): void {
    this.#loop.start();
    // Activations of further Coordinators that this one's crash interrupted are undone (no ghost stays).
    void this.#rollBackUntilDone();
    this.#unwatch = this.#o.members?.watch(() => {
      this.#loop.pollNow().catch((err: unknown) => this.#o.logger.debug("store changed; sync failed", { error: errorMessage(err) }));
    });
  }

  /** close stops following the store. */
  close(): void {
    this.#closed = true;
    this.#unwatch?.();
    this.#loop.stop();
  }

  /** checkQuorum throws UnavailableError naming the lost store quorum when no change can be committed now. */
  async checkQuorum(): Promise<void> {
    await this.#o.members?.checkQuorum();
  }

  /**
   * activateCoordinators activates every endpoint as a further Coordinator, one at a time (each
   * changes the store's membership), each independently; afterwards every Node is told to update.
   */
  async activateCoordinators(endpoints: readonly string[], log: ProgressLog): Promise<ActivationResult> {
    const result: ActivationResult = { activated: [], failed: [] };
    const nodes = (await this.#o.store.snapshot()).peers.filter((p) => p.role === "node");
    const deps = this.#joinDeps();
    for (const [i, ep] of endpoints.entries()) {
      const progress: ActivationProgress = { committing: false };
      const started = this.#o.clock.now();
      try {
        const peer = await activateCoordinator(deps, ep, progress);
        this.#o.events?.activation?.("coordinator", "ok", this.#o.clock.now() - started);
        result.activated.push(peer);
        log(`[${i + 1}/${endpoints.length}] activated Coordinator ${ep} as ${peer.vpnIP}`);
      } catch (err) {
        const error = errorMessage(err);
        this.#o.events?.activation?.("coordinator", "failed", this.#o.clock.now() - started);
        result.failed.push({ endpoint: ep, error, marked: progress.committing });
        log(`[${i + 1}/${endpoints.length}] FAILED to activate Coordinator ${ep}: ${error}`);
        this.#o.logger.warn("coordinator activation failed", { endpoint: ep, error });
      }
    }
    if (result.activated.length > 0) {
      await this.syncVPN().catch(() => {});
      await this.#triggerUpdates(nodes);
    }
    return result;
  }

  /**
   * #rollBackUntilDone runs rollBackInterrupted (coordinator-join.ts), retrying until the store
   * commits: the further-Coordinator activations an earlier run of this one left unfinished.
   */
  async #rollBackUntilDone(): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await rollBackInterrupted(this.#joinDeps());
        return;
      } catch (err) {
        this.#o.logger.warn("could not roll back an interrupted Coordinator activation yet; trying again", { error: errorMessage(err), attempt });
        await this.#o.clock.sleep(Math.min(this.#o.updateIntervalMs * 2 ** Math.min(attempt, 5), 30_000));
      }
    }
  }

  #joinDeps(): CoordinatorJoinDeps {
    return { self: this.#o.self.vpnIP, run: this.#run, store: this.#o.store, members: this.#o.members, peerClient: this.#o.peerClient, logger: this.#o.logger, syncVPN: () => this.syncVPN() };
  }

  /** syncVPN applies the store's current peer set to the own device now. */
  async syncVPN(): Promise<void> {
    await this.#loop.pollNow();
  }

  /**
   * activateNodes activates every endpoint as a Node (bounded concurrency), each independently: a
   * failing Node is reported and the others go on. Afterwards every Node, earlier and new, is told to update.
   */
  async activateNodes(endpoints: readonly string[], log: ProgressLog): Promise<ActivationResult> {
    const result: ActivationResult = { activated: [], failed: [] };
    const queue = [...endpoints];
    const existing = (await this.#o.store.snapshot()).peers.filter((p) => p.role === "node");
    let done = 0;
    const worker = async (): Promise<void> => {
      for (let ep = queue.shift(); ep !== undefined; ep = queue.shift()) {
        const progress: ActivationProgress = { committing: false };
        const started = this.#o.clock.now();
        try {
          const peer = await this.#activateNode(ep, progress);
          this.#o.events?.activation?.("node", "ok", this.#o.clock.now() - started);
          result.activated.push(peer);
          log(`[${++done}/${endpoints.length}] activated Node ${ep} as ${peer.vpnIP}`);
        } catch (err) {
          const error = errorMessage(err);
          this.#o.events?.activation?.("node", "failed", this.#o.clock.now() - started);
          result.failed.push({ endpoint: ep, error, marked: progress.committing });
          log(`[${++done}/${endpoints.length}] FAILED to activate Node ${ep}: ${error}`);
          this.#o.logger.warn("node activation failed", { endpoint: ep, error });
        }
      }
    };
    const n = Math.max(1, Math.min(this.#o.activationConcurrency ?? 8, endpoints.length));
    await Promise.all(Array.from({ length: n }, worker));
    // Every Node, old and new, updates now: Nodes of one batch started before the others existed.
    if (result.activated.length > 0) await this.#triggerUpdates([...existing, ...result.activated]);
    return result;
  }

  /** credential returns the cluster credential (derived from the stored secrets each time: nothing cached). */
  async credential(): Promise<CoordinatorCredential> {
    const { masterSecret, clusterID } = await this.#o.store.secrets();
    return CoordinatorCredential.derive(masterSecret, clusterID);
  }

  async #activateNode(endpoint: string, progress: ActivationProgress): Promise<PeerRecord> {
    const ep = parseEndpoint(endpoint, "nodeEndpoint");
    const secrets = await this.#o.store.secrets();
    const credential = CoordinatorCredential.derive(secrets.masterSecret, secrets.clusterID);
    const vpnIP = await this.#o.store.allocateNodeIP();
    crashPoint("coordinator-activation:after-ip");
    let diskUUID: string | undefined;
    let peer: PeerRecord;
    try {
      const snap = await this.#o.store.snapshot();
      const reply = await this.#o.peerClient.activateAsNode(
        endpoint,
        {
          nodeVPNIP: vpnIP,
          ownerID: deriveOwnerID(secrets.masterSecret),
          clusterID: secrets.clusterID,
          peers: snap.peers,
          coordinatorVPNIPs: snap.peers.filter((p) => p.role === "coordinator").map((p) => p.vpnIP),
          coordinatorEndpoints: snap.peers.filter((p) => p.role === "coordinator").map((p) => `${p.publicIP}:${p.pubapiPort}`),
          coordinatorAuthPubKey: credential.publicKey,
        },
        async (uuid) => {
          if (uuid !== "") {
            checkDiskUUID(uuid);
            // Check and claim in one transaction: of two Nodes naming one UUID, only one gets its key.
            await this.#o.store.claimDisk(uuid, vpnIP);
            diskUUID = uuid;
          }
          crashPoint("coordinator-activation:after-disk-claimed");
          progress.committing = true; // the key (possibly empty) is the Node's commit point
          return uuid === "" ? new Uint8Array(0) : stateDiskKey(secrets.masterSecret, secrets.clusterID, uuid);
        },
      );
      peer = { role: "node", publicIP: ep.host, vpnIP, vpnPubKey: reply.vpnPubKey, wgPort: reply.wgPort, pubapiPort: ep.port };
      // Refuses a WireGuard key or VPN IP another peer has: a bad Node fails alone, the set stays valid.
      await this.#o.store.putPeer(peer);
      crashPoint("coordinator-activation:after-peer-stored");
    } catch (err) {
      await this.#o.store.releaseNodeIP(vpnIP, diskUUID).catch((e: unknown) => this.#o.logger.error("release IP", { error: errorMessage(e) }));
      throw err;
    }
    try {
      await this.syncVPN();
      await this.#o.peerClient.joinCluster(endpoint, this.#o.self.vpnIP, credential);
    } catch (err) {
      // The Node never joined: take it out again, so the peer set holds only working peers.
      await this.#o.store.removePeer(vpnIP).catch((e: unknown) => this.#o.logger.error("remove half-activated Node", { vpnIP, error: errorMessage(e) }));
      await this.syncVPN().catch(() => {});
      throw err;
    }
    return peer;
  }

  /**
   * removeNode takes a Node (or admin) out of the peer set: its VPN IP is freed and its disk UUID
   * forgotten (its disk key is never released again); the own device drops it at once and the other
   * Nodes are told to update. Returns the new resource version.
   */
  async removeNode(vpnIP: string): Promise<Removed> {
    const snap = await this.#o.store.snapshot();
    const version = await this.#o.store.removePeer(vpnIP);
    await this.syncVPN();
    await this.#triggerUpdates(snap.peers.filter((p) => p.role === "node" && p.vpnIP !== vpnIP));
    return { resourceVersion: version, endpoint: endpointOf(snap.peers, vpnIP) };
  }

  /**
   * removeCoordinator takes another Coordinator out: first its store member (so it no longer counts
   * for the quorum nor sees changes; removing an absent member is fine, so a retry after a failure
   * goes on), then its record (its VPN IP freed, its disk retired: that key is never released again).
   * Every device drops it at its next update; Nodes are told to update now.
   */
  async removeCoordinator(vpnIP: string): Promise<Removed> {
    if (vpnIP === this.#o.self.vpnIP) {
      throw new FailedPreconditionError(`vpnIP: ${vpnIP} is this Coordinator; ask another Coordinator to remove it (one always stays)`);
    }
    const snap = await this.#o.store.snapshot();
    const peer = snap.peers.find((p) => p.vpnIP === vpnIP);
    if (!peer) throw new NotFoundError(`vpnIP: no peer has ${vpnIP}`);
    if (peer.role !== "coordinator") throw new FailedPreconditionError(`vpnIP: ${vpnIP} is a ${peer.role}, not a Coordinator (use remove-node)`);
    await this.#o.members?.removeMember(vpnIP);
    const version = await this.#o.store.removePeer(vpnIP, { coordinator: true });
    this.#o.logger.info("removed a Coordinator", { vpnIP });
    // Activations it left pending now have nobody to finish them.
    await rollBackInterrupted(this.#joinDeps()).catch((err: unknown) => this.#o.logger.warn("could not roll back the activations the removed Coordinator left pending", { error: errorMessage(err) }));
    await this.syncVPN();
    await this.#triggerUpdates(snap.peers.filter((p) => p.role === "node"));
    return { resourceVersion: version, endpoint: endpointOf(snap.peers, vpnIP) };
  }

  /**
   * #triggerUpdates tells Nodes to update now: those that hold no stream on this Coordinator (a
   * streaming Node gets the change pushed; a trigger would cost an aTLS handshake, two quotes, for
   * nothing). It waits for them at most triggerWaitMs: a Node that cannot be reached (partitioned,
   * down) must not hold up the admin's answer; its trigger goes on in the background and the Node
   * catches up on its own (its stream or next poll).
   */
  async #triggerUpdates(changed: PeerRecord[]): Promise<void> {
    const nodes = changed.filter((n) => !this.#feed.streaming(n.vpnIP));
    if (nodes.length < changed.length) this.#o.logger.debug("trigger node updates", { streaming: changed.length - nodes.length, triggered: nodes.length });
    if (nodes.length === 0) return;
    const credential = await this.credential();
    const all = Promise.all(
      nodes.map((n) =>
        this.#o.peerClient.triggerNodeUpdate(`${n.publicIP}:${n.pubapiPort}`, credential).catch((err: unknown) => {
          this.#o.logger.warn("trigger node update failed", { vpnIP: n.vpnIP, error: errorMessage(err) });
        }),
      ),
    );
    const abort = new AbortController();
    await Promise.race([all, this.#o.clock.sleep(triggerWaitMs, abort.signal).catch(() => {})]);
    abort.abort();
  }

  /**
   * updates is the feed WatchUpdates streams are served from (change log, acknowledgements). Every
   * snapshot this Coordinator reads from the store goes into it (UpdateFeed.observe, the seam).
   */
  get updates(): UpdateFeed {
    return this.#feed;
  }

  /**
   * getUpdate serves vpnapi GetUpdate: the peer set when it moved past `resourceVersion`. A
   * caller's `resourceVersion` is the version it has applied: recorded as its acknowledgement.
   */
  async getUpdate(resourceVersion: number, callerVPNIP?: string): Promise<PeerUpdate> {
    if (callerVPNIP !== undefined) this.#heartbeats.set(callerVPNIP, this.#o.clock.now());
    const snap = await this.#o.store.snapshot();
    this.#feed.observe(snap);
    if (callerVPNIP !== undefined && resourceVersion > 0) this.#feed.ack(callerVPNIP, resourceVersion);
    return { resourceVersion: snap.resourceVersion, peers: snap.resourceVersion === resourceVersion ? undefined : snap.peers };
  }

  /** lastSeen returns when each VPN IP last polled (ms since epoch). */
  lastSeen(): ReadonlyMap<string, number> {
    return this.#heartbeats;
  }

  /** getDataKey serves vpnapi GetDataKey (see KeyRelease.getDataKey). */
  getDataKey(dataKeyID: string, length: number, callerVPNIP: string | undefined): Promise<Buffer> {
    return this.#keys.getDataKey(dataKeyID, length, callerVPNIP);
  }

  /** requestStateDiskKey serves pubapi RequestStateDiskKey (see KeyRelease.requestStateDiskKey). */
  requestStateDiskKey(diskUUID: string): Promise<void> {
    return this.#keys.requestStateDiskKey(diskUUID);
  }
}
