import { AckTracker } from "./ack-tracker.js";
import { ChangeLog, type PeerSetAt } from "./change-log.js";
import type { Clock } from "./clock.js";
import type { PeerDelta } from "./remote.js";

/**
 * UpdateFeed is what a Coordinator serves Nodes from: the change log, the subscribers (open
 * WatchUpdates streams, woken on every new version) and the acknowledgements. gRPC-free.
 *
 * The seam: observe(snapshot) is the one function that feeds new versions in. The Coordinator
 * calls it with every snapshot it reads from the store (after its own commits, and on its periodic
 * re-read, which is how another Coordinator's commits arrive today); a store watch (etcd) that
 * hands over each committed snapshot replaces the periodic re-read without touching the rest.
 */
export class UpdateFeed {
  readonly log: ChangeLog;
  readonly acks: AckTracker;
  readonly #clock: Clock;
  readonly #subscribers = new Set<() => void>();
  /** #streams counts the open subscriptions per Node. */
  readonly #streams = new Map<string, number>();

  constructor(clock: Clock, log = new ChangeLog(), acks = new AckTracker()) {
    this.#clock = clock;
    this.log = log;
    this.acks = acks;
  }

  /** version is the newest version observed. */
  get version(): number {
    return this.log.version;
  }

  /** watchers is the number of open subscriptions. */
  get watchers(): number {
    return this.#subscribers.size;
  }

  /** observe feeds a committed snapshot; when it is new, records its commit time and wakes every subscriber. */
  observe(snap: PeerSetAt): void {
    const now = this.#clock.now();
    const entry = this.log.observe(snap, now);
    if (this.log.version !== snap.resourceVersion) return;
    this.acks.committed(snap.resourceVersion, entry?.atMs ?? now);
    if (!entry) return;
    for (const s of [...this.#subscribers]) s();
  }

  /** since returns the changes from version v (see ChangeLog.since). */
  since(v: number): PeerDelta {
    return this.log.since(v);
  }

  /**
   * subscribe calls `wake` after every new version; returns the unsubscribe function. `node` names
   * the subscriber (a Node's VPN IP) so that streaming(node) knows it is reached by a push.
   */
  subscribe(wake: () => void, node?: string): () => void {
    this.#subscribers.add(wake);
    if (node !== undefined) this.#streams.set(node, (this.#streams.get(node) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#subscribers.delete(wake);
      if (node === undefined) return;
      const left = (this.#streams.get(node) ?? 1) - 1;
      if (left > 0) this.#streams.set(node, left);
      else this.#streams.delete(node);
    };
  }

  /** streaming tells whether `node` holds a stream on this feed now (a change reaches it without a trigger). */
  streaming(node: string): boolean {
    return this.#streams.has(node);
  }

  /** ack records that `node` applied `version` now (from a stream or a poll). */
  ack(node: string, version: number): void {
    this.acks.ack(node, version, this.#clock.now());
  }
}
