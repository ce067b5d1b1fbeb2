import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";
import type { CoordinatorClient, CoordinatorDialer, PeerUpdate, UpdateStream } from "./remote.js";
import { UpdateLoop } from "./update-loop.js";
import { toVPNPeers } from "./vpn-peers.js";
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
}

/**
 * Node is the Node role of a peer: it keeps one vpnapi channel to a Coordinator (moving to the next
 * Coordinator after a failure) and converges its WireGuard device to the served peer set.
 * close() is required to release the channel.
 */
export class Node {
  readonly #o: NodeOptions;
  readonly #loop: UpdateLoop;
  #client: CoordinatorClient | undefined;
  #current = 0;

  constructor(options: NodeOptions) {
    if (options.coordinatorVPNIPs.length === 0) throw new RangeError("Node: no Coordinator VPN IPs");
    this.#o = options;
    this.#loop = new UpdateLoop({
      fetch: (v) => this.#fetch(v),
      apply: (peers) => options.vpn.updatePeers(toVPNPeers(peers, options.vpnIP)),
      repair: (peers) => options.vpn.repairPeers(toVPNPeers(peers, options.vpnIP)),
      watch: (v) => this.#watch(v),
      intervalMs: options.updateIntervalMs,
      clock: options.clock,
      logger: options.logger.child("update-loop"),
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

  /** watch opens a stream on the current channel (the poll's failover moves both to the next Coordinator). */
  #watch(version: number): UpdateStream | undefined {
    const ips = this.#o.coordinatorVPNIPs;
    this.#client ??= this.#o.dial(ips[this.#current % ips.length]!);
    return this.#client.watchUpdates?.(version, this.#o.vpnIP);
  }

  async #fetch(version: number): Promise<PeerUpdate> {
    const ips = this.#o.coordinatorVPNIPs;
    this.#client ??= this.#o.dial(ips[this.#current % ips.length]!);
    try {
      return await this.#client.getUpdate(version, this.#o.vpnIP);
    } catch (err) {
      if (ips.length > 1) {
        this.#client.close();
        this.#client = undefined;
        this.#current++;
      }
      throw err;
    }
  }
}

