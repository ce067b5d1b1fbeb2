import type { PeerRecord } from "./peer.js";
import type { PeerDelta } from "./remote.js";

/** ChangeEntry is one step of the change log: what changed from fromVersion to version, seen at atMs. */
export interface ChangeEntry {
  fromVersion: number;
  version: number;
  atMs: number;
  upserted: PeerRecord[];
  removed: string[];
}

/** PeerSetAt is the peer set at one resource version (the shape of ClusterStore.snapshot()). */
export interface PeerSetAt {
  resourceVersion: number;
  peers: readonly PeerRecord[];
}

/** defaultChangeLogEntries bounds the change log. */
export const defaultChangeLogEntries = 1024;

/**
 * ChangeLog is a Coordinator's bounded log of peer-set changes, gRPC-free. It is fed committed
 * snapshots through observe() only (the one seam: today the Coordinator feeds every snapshot it
 * reads from the store after its own commits and its periodic re-read; a store watch across
 * Coordinators feeds the same function). It keeps the current set and the last maxEntries steps,
 * and answers since(v) with the merged changes from v, or with a snapshot when v is older than the
 * log (or unknown, e.g. a version another Coordinator committed that this one never saw). Replies
 * for one v are computed once per version and shared. Not for concurrent mutation (single event loop).
 */
export class ChangeLog {
  readonly #max: number;
  #version = 0;
  #peers = new Map<string, PeerRecord>();
  #entries: ChangeEntry[] = [];
  #replies = new Map<number, PeerDelta>();

  constructor(maxEntries = defaultChangeLogEntries) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("ChangeLog: maxEntries must be a positive integer");
    this.#max = maxEntries;
  }

  /** version is the newest version observed (0: none). */
  get version(): number {
    return this.#version;
  }

  /** entries is the retained log, oldest first. */
  get entries(): readonly ChangeEntry[] {
    return this.#entries;
  }

  /**
   * observe records a committed snapshot. A snapshot not newer than the current version is
   * ignored (undefined); otherwise the step from the current set is appended (the first snapshot
   * only sets the base) and returned.
   */
  observe(snap: PeerSetAt, atMs: number): ChangeEntry | undefined {
    if (snap.resourceVersion <= this.#version) return undefined;
    const next = new Map(snap.peers.map((p) => [p.vpnIP, p]));
    const first = this.#version === 0 && this.#peers.size === 0 && this.#entries.length === 0;
    const entry: ChangeEntry = { fromVersion: this.#version, version: snap.resourceVersion, atMs, upserted: [], removed: [] };
    for (const [ip, p] of next) {
      const old = this.#peers.get(ip);
      if (!old || !sameRecord(old, p)) entry.upserted.push(p);
    }
    for (const ip of this.#peers.keys()) if (!next.has(ip)) entry.removed.push(ip);
    this.#version = snap.resourceVersion;
    this.#peers = next;
    this.#replies.clear();
    if (first) return undefined;
    this.#entries.push(entry);
    if (this.#entries.length > this.#max) this.#entries.splice(0, this.#entries.length - this.#max);
    return entry;
  }

  /** snapshot returns the current set as a snapshot delta. */
  snapshot(): PeerDelta {
    return this.#cached(-1, () => ({ resourceVersion: this.#version, fromVersion: 0, snapshot: true, upserted: [...this.#peers.values()], removed: [] }));
  }

  /**
   * since returns the changes from version v to the current version: empty when v is current, a
   * merged delta when the log reaches back to v, a snapshot otherwise.
   */
  since(v: number): PeerDelta {
    if (v === this.#version) return { resourceVersion: v, fromVersion: v, snapshot: false, upserted: [], removed: [] };
    let i = this.#entries.length - 1;
    while (i >= 0 && this.#entries[i].fromVersion > v) i--;
    if (i < 0 || this.#entries[i].fromVersion !== v) return this.snapshot();
    return this.#cached(v, () => {
      const merged = new Map<string, PeerRecord | undefined>();
      for (const e of this.#entries.slice(i)) {
        for (const ip of e.removed) merged.set(ip, undefined);
        for (const p of e.upserted) merged.set(p.vpnIP, p);
      }
      const upserted: PeerRecord[] = [];
      const removed: string[] = [];
      for (const [ip, p] of merged) {
        if (p) upserted.push(p);
        else if (!this.#peers.has(ip)) removed.push(ip);
      }
      return { resourceVersion: this.#version, fromVersion: v, snapshot: false, upserted, removed };
    });
  }

  #cached(key: number, make: () => PeerDelta): PeerDelta {
    let r = this.#replies.get(key);
    if (!r) {
      r = make();
      this.#replies.set(key, r);
    }
    return r;
  }
}

/** sameRecord compares two peer records field by field. */
export function sameRecord(a: PeerRecord, b: PeerRecord): boolean {
  return a.vpnIP === b.vpnIP && a.vpnPubKey === b.vpnPubKey && a.publicIP === b.publicIP && a.wgPort === b.wgPort && a.pubapiPort === b.pubapiPort && a.role === b.role;
}
