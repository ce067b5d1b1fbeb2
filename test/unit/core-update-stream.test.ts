import { describe, expect, it } from "vitest";
import { AckTracker } from "../../src/core/ack-tracker.js";
import { ChangeLog } from "../../src/core/change-log.js";
import { systemClock } from "../../src/core/clock.js";
import { Histogram } from "../../src/core/histogram.js";
import { UpdateFeed } from "../../src/core/update-feed.js";
import { nullLogger } from "../../src/shared/logger.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { UpdateLoop } from "../../src/core/update-loop.js";
import { toVPNPeers } from "../../src/core/vpn-peers.js";
import { FeedBackend } from "../helpers/feed-backend.js";
import { FakeVPN } from "../helpers/fakes.js";
import { until } from "../helpers/wait.js";

const key = (n: number) => Buffer.alloc(32, 0).fill(n & 255, 0, 16).fill((n >> 8) & 255, 16).toString("base64");
const rec = (i: number, k = i, ip = `192.0.2.${i}`): PeerRecord => ({ role: "node", publicIP: ip, vpnIP: `10.118.1.${i}`, vpnPubKey: key(k), wgPort: 51820, pubapiPort: 9000 });
const self = "10.118.1.250";

/** rng is a small deterministic generator (mulberry32), so a failing seed reproduces. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("change log", () => {
  it("answers the merged changes since a version in the log, a snapshot for one older than the log, nothing for the current one", () => {
    const log = new ChangeLog(3);
    const peers = new Map<string, PeerRecord>();
    const commit = (v: number, f: () => void) => {
      f();
      log.observe({ resourceVersion: v, peers: [...peers.values()] }, v);
    };
    commit(1, () => peers.set("a", rec(1)));
    expect(log.since(0).snapshot).toBe(true); // the first snapshot only sets the base
    commit(2, () => peers.set("b", rec(2)));
    commit(3, () => peers.set("a", rec(1, 1, "192.0.2.99"))); // endpoint change
    commit(4, () => peers.delete("b"));
    commit(5, () => peers.set("c", rec(3)));
    expect(log.entries.map((e) => e.version)).toEqual([3, 4, 5]);
    expect(log.since(5)).toEqual({ resourceVersion: 5, fromVersion: 5, snapshot: false, upserted: [], removed: [] });
    expect(log.since(4)).toEqual({ resourceVersion: 5, fromVersion: 4, snapshot: false, upserted: [rec(3)], removed: [] });
    const d = log.since(2);
    expect(d.snapshot).toBe(false);
    expect(d.upserted).toEqual([rec(1, 1, "192.0.2.99"), rec(3)]);
    expect(d.removed).toEqual(["10.118.1.2"]);
    expect(log.since(1)).toMatchObject({ snapshot: true, resourceVersion: 5, upserted: [rec(1, 1, "192.0.2.99"), rec(3)] }); // fell off the log
    expect(log.since(2)).toBe(d); // computed once per version, shared by every stream
    expect(log.observe({ resourceVersion: 4, peers: [] }, 9)).toBeUndefined(); // older: ignored
  });

  it("acknowledgements: per-Node applied version, commit-to-ack delays per version and in the histogram; versions only grow", () => {
    const acks = new AckTracker(new Histogram([10, 100, 1000]));
    acks.committed(1, 0);
    acks.ack("n1", 1, 50); // the first ack is a baseline only
    acks.committed(2, 100);
    acks.committed(3, 200);
    acks.ack("n1", 3, 250); // covers 2 (150 ms) and 3 (50 ms)
    acks.ack("n2", 2, 300);
    acks.ack("n2", 3, 900);
    acks.ack("n1", 2, 950); // older: ignored
    expect(acks.applied().get("n1")).toEqual({ appliedVersion: 3, atMs: 250 });
    expect(acks.propagation(3)).toEqual({ version: 3, acked: 2, delaysMs: [50, 700] });
    expect(acks.propagation(2)).toEqual({ version: 2, acked: 2, delaysMs: [150] });
    const h = acks.histogram.snapshot();
    expect(h.count).toBe(3);
    expect(h.counts).toEqual([0, 1, 2, 0]);
    expect(acks.histogram.quantile(0.5)).toBe(700); // the bucket bound, capped at the max seen
    expect(acks.histogram.quantile(0.01)).toBe(100);
  });
});

describe("update path property: random changes, stream drops and Coordinator restarts", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`seed ${seed}: the device ends equal to the snapshot, versions only grow, acks reach the Coordinator`, async () => {
      const rand = rng(seed);
      const backend = new FeedBackend({ logEntries: 4 }); // small: restarts and long gaps force snapshots
      const vpn = new FakeVPN("192.0.2.250", 51820);
      const streams: Array<{ drop(): void }> = [];
      const versions: number[] = [];
      let snapshots = 0;
      let deltas = 0;
      const loop = new UpdateLoop({
        fetch: (v) => backend.getUpdate(v, self),
        watch: (v) => {
          const s = backend.memoryStream(v, self);
          const next = s.next;
          s.next = async () => {
            const d = await next();
            if (d?.snapshot) snapshots++;
            else if (d) deltas++;
            return d;
          };
          streams.push(s);
          return s;
        },
        apply: async (peers, v) => {
          versions.push(v);
          await vpn.updatePeers(toVPNPeers(peers, self));
        },
        repair: (peers) => vpn.repairPeers(toVPNPeers(peers, self)),
        intervalMs: 5,
        clock: systemClock,
        logger: nullLogger,
      });
      let nextID = 1;
      backend.commit((m) => m.set(`10.118.1.${nextID}`, rec(nextID++)));
      loop.start();
      try {
        for (let step = 0; step < 60; step++) {
          const r = rand();
          const ips = [...backend.peers.keys()];
          const pick = () => ips[Math.floor(rand() * ips.length)];
          if (r < 0.3 && nextID < 200) backend.commit((m) => m.set(`10.118.1.${nextID}`, rec(nextID++)));
          else if (r < 0.45 && ips.length > 0) backend.commit((m) => m.delete(pick()));
          else if (r < 0.6 && ips.length > 0) {
            const ip = pick();
            backend.commit((m) => m.set(ip, { ...m.get(ip)!, vpnPubKey: key(1000 + nextID++) })); // key rotation
          } else if (r < 0.75 && ips.length > 0) {
            const ip = pick();
            backend.commit((m) => m.set(ip, { ...m.get(ip)!, publicIP: `198.51.100.${Math.floor(rand() * 250) + 1}` })); // endpoint change
          } else if (r < 0.87) streams.at(-1)?.drop();
          else {
            for (const s of streams) s.drop();
            backend.restart();
          }
          if (rand() < 0.3) {
            await until(`seed ${seed} step ${step}: the Node to reach version ${backend.version}`, () => loop.resourceVersion === backend.version, 5000);
            expect(sorted(vpn.peers)).toEqual(sorted(toVPNPeers(backend.snapshot().peers, self)));
          }
        }
        await until(`seed ${seed}: the Node to reach version ${backend.version}`, () => loop.resourceVersion === backend.version, 5000);
        expect(sorted(vpn.peers)).toEqual(sorted(toVPNPeers(backend.snapshot().peers, self)));
        expect(versions).toEqual([...versions].sort((a, b) => a - b));
        expect(new Set(versions).size).toBe(versions.length);
        expect(deltas).toBeGreaterThan(0);
        expect(snapshots).toBeGreaterThan(0);
        await until("the acknowledgement", () => backend.feed.acks.applied().get(self)?.appliedVersion === backend.version || backend.feed.acks.applied().size === 0, 5000);
      } finally {
        loop.stop();
      }
    });
  }
});

function sorted<T extends { vpnIP: string }>(xs: readonly T[]): T[] {
  return [...xs].sort((a, b) => a.vpnIP.localeCompare(b.vpnIP));
}

describe("update feed subscriptions", () => {
  it("knows which Nodes hold a stream (they are not triggered): counted per Node, released once per unsubscribe", () => {
    const feed = new UpdateFeed(systemClock);
    const a1 = feed.subscribe(() => {}, "10.118.1.1");
    const a2 = feed.subscribe(() => {}, "10.118.1.1"); // a reconnect before the old stream closed
    const anon = feed.subscribe(() => {});
    expect(feed.streaming("10.118.1.1")).toBe(true);
    expect(feed.streaming("10.118.1.2")).toBe(false);
    expect(feed.watchers).toBe(3);
    a1();
    a1(); // twice: no effect
    expect(feed.streaming("10.118.1.1")).toBe(true);
    a2();
    expect(feed.streaming("10.118.1.1")).toBe(false);
    anon();
    expect(feed.watchers).toBe(0);
  });
});
