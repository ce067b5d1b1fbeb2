import type { Clock } from "./clock.js";
import { CoreError, errorMessage } from "./errors.js";
import type { PeerRecord } from "./peer.js";
import type { Logger } from "../shared/logger.js";
import type { CoordinatorClient, CoordinatorDialer, PeerUpdate, UpdateStream } from "./remote.js";
import { UpdateLoop } from "./update-loop.js";
import { deviceSync } from "./vpn-peers.js";
import type { VPN } from "./vpn.js";

/** NodeOptions wires a Node's update loop. */
export interface NodeOptions {
  vpnIP: string;
  coordinatorVPNIPs: string[];
  dial: CoordinatorDialer;
  vpn: VPN;
  updateIntervalMs: number;
  clock: Clock;
  logger: Logger;
  /** onPeers runs after every peer set applied (the peer remembers its Coordinators). */
  onPeers?: (peers: PeerRecord[]) => Promise<void>;
}

/**
 * Node is the Node role of a peer: it keeps one vpnapi channel to a Coordinator and converges its
 * WireGuard device to the served peer set. It knows every Coordinator from the peer set it applied;
 * when its Coordinator stops answering it moves to the next one at once (after a short random
 * pause, so the Nodes of a failed Coordinator do not arrive in lockstep), one channel at a time,
 * and the update loop backs off only when no Coordinator answered. A Coordinator whose last call
 * timed out (a dead VM is silent: every call costs the whole deadline) is tried after the ones that
 * answered, even with an error (one that lost its store quorum answers at once), so a Node reaches
 * the Coordinator that is back within one call instead of a deadline per dead one.
 * close() is required to release the channel.
 */
export class Node {
  readonly #o: NodeOptions;
  readonly #loop: UpdateLoop;
  #client: CoordinatorClient | undefined;
  #current = 0;
  #coordinators: string[];
  /** #silent are the Coordinators whose last call timed out. */
  readonly #silent = new Set<string>();

  constructor(options: NodeOptions) {
    if (options.coordinatorVPNIPs.length === 0) throw new RangeError("Node: no Coordinator VPN IPs");
    this.#o = options;
    this.#coordinators = [...options.coordinatorVPNIPs];
    this.#loop = new UpdateLoop({
      fetch: (v) => this.#fetch(v),
      ...deviceSync(options, options.vpnIP, "update-loop", async (peers) => {
        this.#learnCoordinators(peers);
        await options.onPeers?.(peers);
      }),
      watch: (v) => this.#watch(v),
      // A Node cut off for a while (a partition, a Coordinator restart) is back within four intervals
      // of the Coordinator answering again, not after a minute of backoff; polls stay jittered.
      maxBackoffMs: 4 * options.updateIntervalMs,
    });
  }

  /** resourceVersion is the last peer-set version applied. */
  get resourceVersion(): number {
    return this.#loop.resourceVersion;
  }

  /** start begins polling in the background. */
  start(): void {
    this.#loop.start();
  }

  /** update polls now and returns the applied version; throws when the Coordinator can't be reached. */
  update(): Promise<number> {
    return this.#loop.pollNow();
  }

  /** close stops polling and closes the channel. */
  close(): void {
    this.#loop.stop();
    this.#client?.close();
    this.#client = undefined;
  }

  /** coordinators are the Coordinator VPN IPs this Node currently knows. */
  get coordinators(): readonly string[] {
    return this.#coordinators;
  }

  /** #learnCoordinators takes the Coordinators from an applied peer set, keeping the current channel when its Coordinator is still one. */
  #learnCoordinators(peers: PeerRecord[]): void {
    const ips = peers.filter((p) => p.role === "coordinator").map((p) => p.vpnIP);
    if (ips.length === 0 || ips.join() === this.#coordinators.join()) return;
    const current = this.#coordinators[this.#current % this.#coordinators.length];
    this.#coordinators = ips;
    const keep = current === undefined ? -1 : ips.indexOf(current);
    if (keep >= 0) {
      this.#current = keep;
      return;
    }
    this.#client?.close();
    this.#client = undefined;
    this.#current = 0;
  }

  /** watch opens a stream on the current channel (the poll's failover moves both to the next Coordinator). */
  #watch(version: number): UpdateStream | undefined {
    const ips = this.#coordinators;
    this.#client ??= this.#o.dial(ips[this.#current % ips.length]);
    return this.#client.watchUpdates?.(version, this.#o.vpnIP);
  }

  /**
   * #fetch asks the current Coordinator, and on failure each other one in turn (one channel at a
   * time); those that went silent come last.
   */
  async #fetch(version: number): Promise<PeerUpdate> {
    const ips = this.#coordinators;
    const rotation = ips.map((_, i) => ips[(this.#current + i) % ips.length]);
    const order = [...rotation.filter((ip) => !this.#silent.has(ip)), ...rotation.filter((ip) => this.#silent.has(ip))];
    let lastErr: unknown;
    let answered: unknown; // an error a Coordinator answered with says more than a timeout
    for (const [tried, ip] of order.entries()) {
      if (ips[this.#current % ips.length] !== ip) {
        this.#client?.close();
        this.#client = undefined;
        this.#current = ips.indexOf(ip);
      }
      this.#client ??= this.#o.dial(ip);
      try {
        const update = await this.#client.getUpdate(version, this.#o.vpnIP);
        this.#silent.delete(ip);
        return update;
      } catch (err) {
        lastErr = err;
        if (err instanceof CoreError && err.code === "deadline-exceeded") this.#silent.add(ip);
        else {
          this.#silent.delete(ip);
          answered ??= err;
        }
        const next = order[tried + 1];
        if (next === undefined) break;
        this.#o.logger.info("Coordinator did not answer: trying the next one", { coordinator: ip, next, error: errorMessage(err) });
        await this.#o.clock.sleep(Math.random() * Math.min(this.#o.updateIntervalMs / 4, 250));
      }
    }
    throw answered ?? lastErr;
  }
}

