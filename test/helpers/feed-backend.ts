import { ChangeLog } from "../../src/core/change-log.js";
import { systemClock, type Clock } from "../../src/core/clock.js";
import { PermissionDeniedError } from "../../src/core/errors.js";
import type { PeerRecord } from "../../src/core/peer.js";
import type { PeerDelta, PeerUpdate, UpdateStream } from "../../src/core/remote.js";
import { UpdateFeed } from "../../src/core/update-feed.js";
import type { VPNAPIBackend } from "../../src/vpnapi/server.js";

/**
 * FeedBackend is a Coordinator reduced to its update path, for tests and benches: a peer set with
 * a version, an UpdateFeed fed on every commit (as the Coordinator feeds it from the store), GetUpdate
 * with the same acknowledgement rule. restart() drops the change log and acknowledgements, like a
 * restarted Coordinator on the same store.
 */
export class FeedBackend implements VPNAPIBackend {
  readonly peers = new Map<string, PeerRecord>();
  version = 0;
  feed: UpdateFeed;
  #snap: { resourceVersion: number; peers: PeerRecord[] } | undefined;
  readonly #clock: Clock;
  readonly #logEntries: number | undefined;

  constructor(options: { clock?: Clock; logEntries?: number } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#logEntries = options.logEntries;
    this.feed = this.#newFeed();
  }

  /** commit changes the peer set and bumps the version (one transaction), then feeds the log. */
  commit(change: (peers: Map<string, PeerRecord>) => void): number {
    change(this.peers);
    this.version++;
    this.#snap = undefined;
    this.feed.observe(this.snapshot());
    return this.version;
  }

  snapshot(): { resourceVersion: number; peers: PeerRecord[] } {
    this.#snap ??= { resourceVersion: this.version, peers: [...this.peers.values()] };
    return this.#snap;
  }

  /** restart replaces the feed (empty change log, no acknowledgements), as a restarted Coordinator. */
  restart(): void {
    this.feed = this.#newFeed();
  }

  async getUpdate(resourceVersion: number, callerVPNIP?: string): Promise<PeerUpdate> {
    const snap = this.snapshot();
    this.feed.observe(snap);
    if (callerVPNIP !== undefined && resourceVersion > 0) this.feed.ack(callerVPNIP, resourceVersion);
    return { resourceVersion: snap.resourceVersion, peers: snap.resourceVersion === resourceVersion ? undefined : snap.peers };
  }

  async getDataKey(): Promise<Buffer> {
    throw new PermissionDeniedError("FeedBackend: no data keys");
  }

  lastSeen(): ReadonlyMap<string, number> {
    return new Map();
  }

  updates(): UpdateFeed {
    return this.feed;
  }

  /**
   * memoryStream is an in-process UpdateStream on the current feed with the server's rules
   * (first reply since(applied), then one message per new version); drop() fails it.
   */
  memoryStream(appliedVersion: number, node: string): UpdateStream & { drop(): void } {
    const feed = this.feed;
    const queue: PeerDelta[] = [];
    let sent = appliedVersion;
    let error: Error | undefined;
    let wake: (() => void) | undefined;
    const push = (): void => {
      const d = feed.since(sent);
      if (!d.snapshot && d.resourceVersion === sent) return;
      sent = d.resourceVersion;
      queue.push(d);
      wake?.();
    };
    if (appliedVersion > 0) feed.ack(node, appliedVersion);
    const unsubscribe = feed.subscribe(push);
    push();
    const end = (err: Error): void => {
      error ??= err;
      unsubscribe();
      wake?.();
    };
    return {
      next: async () => {
        for (;;) {
          const d = queue.shift();
          if (d) return d;
          if (error) throw error;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      ack: (v) => {
        if (!error && v > 0) feed.ack(node, v);
      },
      close: () => end(new Error("closed")),
      drop: () => end(new Error("stream dropped")),
    };
  }

  #newFeed(): UpdateFeed {
    const feed = new UpdateFeed(this.#clock, new ChangeLog(this.#logEntries));
    feed.observe(this.snapshot());
    return feed;
  }
}
