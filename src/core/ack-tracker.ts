import { Histogram } from "./histogram.js";

/** NodeAck is the version a Node last reported applied to its device, and when. */
export interface NodeAck {
  appliedVersion: number;
  atMs: number;
}

/** Propagation summarizes how one committed version reached the Nodes so far. */
export interface Propagation {
  version: number;
  /** acked is how many Nodes acknowledged this version (or a later one). */
  acked: number;
  /** delaysMs are the commit-to-acknowledgement times, ascending. */
  delaysMs: number[];
}

/** recentVersions is how many of the newest versions keep their exact per-Node delays. */
const recentVersions = 16;
/** maxCommitTimes bounds the commit times kept (older versions no longer count towards the histogram). */
const maxCommitTimes = 4096;

/**
 * AckTracker records, per Node (by VPN IP), the version it last applied and when, and for every
 * committed version the time from commit until each Node acknowledged it: all of them in one
 * histogram (for the metrics export), the exact delays for the 16 newest versions. A Node's first
 * acknowledgement (a new stream, a restarted Coordinator) only sets its baseline: it says nothing
 * about when earlier versions arrived. Versions only grow: an older acknowledgement is ignored.
 * Memory is bounded by the Nodes plus constants. Single event loop, not shared across threads.
 */
export class AckTracker {
  readonly histogram: Histogram;
  readonly #nodes = new Map<string, NodeAck>();
  readonly #commits = new Map<number, number>();
  readonly #recent = new Map<number, number[]>();
  readonly #onDelay: ((delayMs: number) => void) | undefined;

  /** onDelay, when given, also receives every commit-to-acknowledgement delay (a metrics exporter). */
  constructor(histogram = new Histogram(), onDelay?: (delayMs: number) => void) {
    this.histogram = histogram;
    this.#onDelay = onDelay;
  }

  /** committed records when `version` was committed (first record wins). */
  committed(version: number, atMs: number): void {
    if (this.#commits.has(version)) return;
    this.#commits.set(version, atMs);
    if (this.#commits.size > maxCommitTimes) this.#commits.delete(this.#commits.keys().next().value!);
    this.#recent.set(version, []);
    if (this.#recent.size > recentVersions) this.#recent.delete(this.#recent.keys().next().value!);
  }

  /** ack records that `node` applied `version` at nowMs. */
  ack(node: string, version: number, nowMs: number): void {
    const prev = this.#nodes.get(node);
    if (prev && version < prev.appliedVersion) return;
    this.#nodes.set(node, { appliedVersion: version, atMs: nowMs });
    if (!prev || version === prev.appliedVersion) return;
    const from = prev.appliedVersion;
    if (version - from <= this.#commits.size) {
      for (let v = from + 1; v <= version; v++) this.#count(v, nowMs);
    } else {
      for (const v of this.#commits.keys()) if (v > from && v <= version) this.#count(v, nowMs);
    }
  }

  /** applied returns each Node's last acknowledgement. */
  applied(): ReadonlyMap<string, NodeAck> {
    return this.#nodes;
  }

  /** forget drops a Node (removed from the mesh). */
  forget(node: string): void {
    this.#nodes.delete(node);
  }

  /** propagation returns the exact delays of one of the newest versions, or undefined when not kept. */
  propagation(version: number): Propagation | undefined {
    const d = this.#recent.get(version);
    if (!d) return undefined;
    let acked = 0;
    for (const a of this.#nodes.values()) if (a.appliedVersion >= version) acked++;
    return { version, acked, delaysMs: [...d].sort((a, b) => a - b) };
  }

  #count(version: number, nowMs: number): void {
    const at = this.#commits.get(version);
    if (at === undefined) return;
    const delay = Math.max(0, nowMs - at);
    this.histogram.observe(delay);
    this.#onDelay?.(delay);
    this.#recent.get(version)?.push(delay);
  }
}
