import type { Clock } from "./clock.js";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import type { PeerRecord } from "./peer.js";
import type { PeerUpdate } from "./remote.js";

/** UpdateLoopOptions configures an UpdateLoop. */
export interface UpdateLoopOptions {
  /** fetch returns the peer set if it changed since `resourceVersion` (Tailscale's map poll, simplified). */
  fetch(resourceVersion: number): Promise<PeerUpdate>;
  /** apply converges the local device to `peers` (the full set, self included: apply filters). */
  apply(peers: PeerRecord[], resourceVersion: number): Promise<void>;
  /** intervalMs is the time between polls when all is well. */
  intervalMs: number;
  /** maxBackoffMs caps the wait after consecutive failures (default 60 s, never below intervalMs). */
  maxBackoffMs?: number;
  clock: Clock;
  logger: Logger;
}

/**
 * UpdateLoop keeps a device converged to the Coordinators' peer set: it polls with its last
 * resource version and applies new versions. Each poll first re-applies the last applied set, so a
 * device reset behind the loop's back (peers removed, perhaps the very route to the Coordinator) is
 * repaired even when the version did not move; `apply` must therefore be idempotent and cheap when
 * the device already agrees (the VPN diffs against the device and then writes nothing). Polls never
 * overlap, and at most one waits behind a running poll: pollNow calls while one is waiting share
 * it (a flood of TriggerNodeUpdate/JoinCluster costs one extra poll, not a queue). After failures
 * it backs off exponentially up to maxBackoffMs. Call stop() to end it.
 */
export class UpdateLoop {
  readonly #o: UpdateLoopOptions;
  #version = 0;
  #peers: PeerRecord[] | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** #waiting is the poll queued behind the running one (not started yet), shared by later callers. */
  #waiting: Promise<number> | undefined;
  #abort: AbortController | undefined;
  #failures = 0;

  constructor(options: UpdateLoopOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError("UpdateLoop: intervalMs must be positive");
    this.#o = options;
  }

  /** resourceVersion is the last version applied (0: none yet). */
  get resourceVersion(): number {
    return this.#version;
  }

  /** start begins polling in the background; a second start is a no-op. */
  start(): void {
    if (this.#abort) return;
    const abort = new AbortController();
    this.#abort = abort;
    void this.#run(abort.signal);
  }

  /** stop ends the background polling; a poll in flight finishes. */
  stop(): void {
    this.#abort?.abort(new Error("update loop stopped"));
    this.#abort = undefined;
  }

  /**
   * pollNow polls once, after any poll in flight, and returns the version then applied; throws on
   * failure. A call while a poll is already waiting joins that poll: it starts after this call, so
   * it sees every change made before it.
   */
  pollNow(): Promise<number> {
    if (this.#waiting) return this.#waiting;
    const run: Promise<number> = this.#chain.then(() => {
      if (this.#waiting === run) this.#waiting = undefined;
      return this.#pollOnce();
    });
    this.#waiting = run;
    this.#chain = run.catch(() => {});
    return run;
  }

  async #pollOnce(): Promise<number> {
    // Repair first: a reset device may have lost the peer this poll's fetch travels through.
    if (this.#peers !== undefined) await this.#o.apply(this.#peers, this.#version);
    const update = await this.#o.fetch(this.#version);
    if (update.peers !== undefined && update.resourceVersion !== this.#version) {
      await this.#o.apply(update.peers, update.resourceVersion);
      this.#o.logger.debug("applied peer update", { resourceVersion: update.resourceVersion, peers: update.peers.length });
      this.#version = update.resourceVersion;
      this.#peers = update.peers;
    }
    return this.#version;
  }

  async #run(signal: AbortSignal): Promise<void> {
    const maxBackoff = Math.max(this.#o.maxBackoffMs ?? 60_000, this.#o.intervalMs);
    while (!signal.aborted) {
      try {
        await this.pollNow();
        if (this.#failures > 0) this.#o.logger.info("peer updates work again", { failures: this.#failures });
        this.#failures = 0;
      } catch (err) {
        this.#failures++;
        this.#o.logger.warn("peer update failed", { error: errorMessage(err), failures: this.#failures });
      }
      const wait = Math.min(this.#o.intervalMs * 2 ** Math.min(this.#failures, 16), maxBackoff);
      try {
        await this.#o.clock.sleep(this.#failures === 0 ? this.#o.intervalMs : wait, signal);
      } catch {
        return;
      }
    }
  }
}
