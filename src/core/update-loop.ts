import type { Clock } from "./clock.js";
import { errorMessage, InvalidArgumentError } from "./errors.js";
import type { Logger } from "../shared/logger.js";
import type { PeerRecord } from "./peer.js";
import type { PeerDelta, PeerUpdate, UpdateStream } from "./remote.js";

/** UpdateLoopOptions configures an UpdateLoop. */
export interface UpdateLoopOptions {
  /**
   * fetch returns the peer set if it changed since `resourceVersion` (Tailscale's map poll,
   * simplified); `resourceVersion` is also the version applied, so the poll acknowledges it.
   */
  fetch(resourceVersion: number): Promise<PeerUpdate>;
  /**
   * watch opens a stream of deltas from `appliedVersion`; undefined (the option or the result)
   * means poll only. While a stream is held the loop does not poll; when it fails the loop polls
   * once and opens a new one.
   */
  watch?(appliedVersion: number): UpdateStream | undefined;
  /**
   * apply converges the local device to `peers` (the full set, self included: apply filters),
   * cheaply: the device diffs against what it last wrote, without reading itself back.
   */
  apply(peers: PeerRecord[], resourceVersion: number): Promise<void>;
  /**
   * repair is apply after re-reading the device (it restores what a reset removed); undefined
   * means apply. Called rarely: every repairIntervalMs and at the next tick after a failure.
   */
  repair?(peers: PeerRecord[], resourceVersion: number): Promise<void>;
  /** repairIntervalMs is the time between periodic repairs (default 3 × intervalMs). */
  repairIntervalMs?: number;
  /** intervalMs is the time between polls when all is well (and between repair checks). */
  intervalMs: number;
  /** maxBackoffMs caps the wait after consecutive failures (default 60 s, never below intervalMs). */
  maxBackoffMs?: number;
  /** random returns a number in [0, 1) for the backoff's jitter (default Math.random). */
  random?: () => number;
  clock: Clock;
  logger: Logger;
}

/**
 * UpdateLoop keeps a device converged to the Coordinators' peer set. With `watch` it holds one
 * stream of deltas, applies each and acknowledges the applied version on the stream; otherwise (or
 * while no stream can be held) it polls with its applied version. Applies write only what changed.
 * The applied version only grows: older or out-of-order updates are skipped (a delta that does not
 * start at the applied version restarts the stream, which then resumes from it).
 *
 * All device work (applies and repairs) is serialized on one queue, separate from fetching, so a
 * hung poll or stream never delays a repair: every intervalMs a tick repairs the device (re-reads
 * it and restores the last applied set) when repairIntervalMs passed or a failure happened since
 * the last repair. Polls never overlap, and at most one waits behind a running poll: pollNow calls
 * while one is waiting share it (a flood of TriggerNodeUpdate/JoinCluster costs one extra poll, not
 * a queue). After failures it backs off exponentially up to maxBackoffMs, with jitter (so Nodes
 * that lost the same Coordinator do not come back in step); a poll that succeeds meanwhile (a
 * trigger: the Coordinators are back) ends the backoff at once. Call stop() to end it.
 */
export class UpdateLoop {
  readonly #o: UpdateLoopOptions;
  #version = 0;
  #peers: PeerRecord[] | undefined;
  #byIP = new Map<string, PeerRecord>();
  #polls: Promise<unknown> = Promise.resolve();
  #device: Promise<unknown> = Promise.resolve();
  /** #waiting is the poll queued behind the running one (not started yet), shared by later callers. */
  #waiting: Promise<number> | undefined;
  #abort: AbortController | undefined;
  #failures = 0;
  /** #backoff ends the run loop's current backoff sleep early (a poll succeeded meanwhile). */
  #backoff: AbortController | undefined;
  /** #repairDue: the next tick repairs (a failure happened since the last repair). */
  #repairDue = false;
  #lastRepairMs: number;

  constructor(options: UpdateLoopOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError("UpdateLoop: intervalMs must be positive");
    this.#o = options;
    this.#lastRepairMs = options.clock.now();
  }

  /** resourceVersion is the last version applied (0: none yet). */
  get resourceVersion(): number {
    return this.#version;
  }

  /** start begins polling (or streaming) and the repair ticks in the background; a second start is a no-op. */
  start(): void {
    if (this.#abort) return;
    const abort = new AbortController();
    this.#abort = abort;
    void this.#run(abort.signal);
    void this.#tick(abort.signal);
  }

  /** stop ends the background work; a poll or apply in flight finishes, an open stream is closed. */
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
    const run: Promise<number> = this.#polls.then(() => {
      if (this.#waiting === run) this.#waiting = undefined;
      return this.#pollOnce();
    });
    this.#waiting = run;
    this.#polls = run.catch(() => {});
    return run;
  }

  /** repairNow re-reads the device and restores the last applied set (after the device work queued before). */
  repairNow(): Promise<void> {
    return this.#onDevice(() => this.#repair());
  }

  async #pollOnce(): Promise<number> {
    try {
      const update = await this.#o.fetch(this.#version);
      const applied = await this.#onDevice(async () => {
        if (update.peers !== undefined && update.resourceVersion > this.#version) await this.#applySet(update.peers, update.resourceVersion);
        return this.#version;
      });
      this.#backoff?.abort();
      return applied;
    } catch (err) {
      this.#repairDue = true;
      throw err;
    }
  }

  /** applyDelta applies one stream message on the device queue and returns the version then applied. */
  #applyDelta(d: PeerDelta): Promise<number> {
    return this.#onDevice(async () => {
      if (d.resourceVersion <= this.#version) return this.#version; // a poll got there first
      if (d.snapshot) {
        await this.#applySet(d.upserted, d.resourceVersion);
        return this.#version;
      }
      if (d.fromVersion !== this.#version) {
        throw new InvalidArgumentError(`delta from version ${d.fromVersion} does not start at the applied version ${this.#version}`);
      }
      const next = new Map(this.#byIP);
      for (const ip of d.removed) next.delete(ip);
      for (const p of d.upserted) next.set(p.vpnIP, p);
      const keys = new Set<string>();
      for (const p of next.values()) {
        if (keys.has(p.vpnPubKey)) throw new InvalidArgumentError(`delta to version ${d.resourceVersion}: a WireGuard key appears twice`);
        keys.add(p.vpnPubKey);
      }
      await this.#applySet([...next.values()], d.resourceVersion, next);
      return this.#version;
    });
  }

  async #applySet(peers: PeerRecord[], version: number, byIP?: Map<string, PeerRecord>): Promise<void> {
    await this.#o.apply(peers, version);
    this.#o.logger.debug("applied peer update", { resourceVersion: version, peers: peers.length });
    this.#version = version;
    this.#peers = peers;
    this.#byIP = byIP ?? new Map(peers.map((p) => [p.vpnIP, p]));
  }

  async #repair(): Promise<void> {
    if (this.#peers !== undefined) await (this.#o.repair ?? this.#o.apply)(this.#peers, this.#version);
    this.#repairDue = false;
    this.#lastRepairMs = this.#o.clock.now();
  }

  #onDevice<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#device.then(fn);
    this.#device = run.catch(() => {});
    return run;
  }

  /** tick repairs the device when due, on the device queue, independent of fetches in flight. */
  async #tick(signal: AbortSignal): Promise<void> {
    const every = this.#o.repairIntervalMs ?? 3 * this.#o.intervalMs;
    while (!signal.aborted) {
      try {
        await this.#o.clock.sleep(this.#o.intervalMs, signal);
      } catch {
        return;
      }
      if (!this.#repairDue && this.#o.clock.now() - this.#lastRepairMs < every) continue;
      await this.repairNow().catch((err: unknown) => this.#o.logger.warn("device repair failed", { error: errorMessage(err) }));
    }
  }

  /** watch holds one stream until it ends; resolves true when at least one message arrived. */
  async #watch(watch: (v: number) => UpdateStream | undefined, signal: AbortSignal): Promise<boolean> {
    let stream: UpdateStream | undefined;
    try {
      stream = watch(this.#version);
    } catch (err) {
      this.#o.logger.warn("opening the update stream failed", { error: errorMessage(err) });
      return false;
    }
    if (!stream) return false;
    const onAbort = (): void => stream.close();
    signal.addEventListener("abort", onAbort, { once: true });
    let got = false;
    try {
      for (let d = await stream.next(); d !== undefined && !signal.aborted; d = await stream.next()) {
        stream.ack(await this.#applyDelta(d));
        if (!got && this.#failures > 0) this.#o.logger.info("peer updates work again", { failures: this.#failures });
        got = true;
        this.#failures = 0;
      }
    } catch (err) {
      if (!signal.aborted) {
        this.#repairDue = true;
        this.#o.logger.warn("update stream ended", { error: errorMessage(err) });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      stream.close();
    }
    return got;
  }

  async #run(signal: AbortSignal): Promise<void> {
    const maxBackoff = Math.max(this.#o.maxBackoffMs ?? 60_000, this.#o.intervalMs);
    while (!signal.aborted) {
      // A stream is opened only on a Coordinator that just answered: after a failed poll the loop
      // polls (which fails over) until one answers, never holds a stream open to a silent one.
      if (this.#o.watch && this.#failures === 0) await this.#watch((v) => this.#o.watch!(v), signal);
      if (signal.aborted) return;
      // Polled when no stream is configured, and once (the fallback) each time a stream ends.
      try {
        await this.pollNow();
        if (this.#failures > 0) this.#o.logger.info("peer updates work again", { failures: this.#failures });
        this.#failures = 0;
      } catch (err) {
        this.#failures++;
        this.#o.logger.warn("peer update failed", { error: errorMessage(err), failures: this.#failures });
      }
      if (this.#failures === 0) {
        try {
          await this.#o.clock.sleep(this.#o.intervalMs, signal);
        } catch {
          return;
        }
        continue;
      }
      const wait = backoffMs(this.#failures, this.#o.intervalMs, maxBackoff, this.#o.random ?? Math.random);
      const backoff = new AbortController();
      this.#backoff = backoff;
      const either = AbortSignal.any([signal, backoff.signal]);
      try {
        await this.#o.clock.sleep(wait, either);
      } catch {
        if (signal.aborted) return;
        // A poll succeeded while this loop backed off: the Coordinators answer again.
        this.#o.logger.info("peer updates work again", { failures: this.#failures });
        this.#failures = 0;
      } finally {
        this.#backoff = undefined;
      }
    }
  }
}

/**
 * backoffMs is the wait after the failures-th consecutive failure: intervalMs doubled per failure,
 * capped at maxMs, then spread over its upper half (jitter) so peers that failed together retry
 * apart; never below intervalMs.
 */
export function backoffMs(failures: number, intervalMs: number, maxMs: number, random: () => number): number {
  const full = Math.min(intervalMs * 2 ** Math.min(failures, 16), maxMs);
  return Math.max(intervalMs, Math.round(full / 2 + (full / 2) * random()));
}
