import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.js";
import { CoreError, UnavailableError } from "../../src/core/errors.js";
import { nullLogger } from "../../src/shared/logger.js";
import { Node } from "../../src/core/node.js";
import type { PeerRecord } from "../../src/core/peer.js";
import type { CoordinatorClient, PeerUpdate } from "../../src/core/remote.js";
import { backoffMs, UpdateLoop } from "../../src/core/update-loop.js";
import { FakeVPN } from "../helpers/fakes.js";
import { until } from "../helpers/wait.js";

const peer = (i: number, key: string): PeerRecord => ({ role: "node", publicIP: `192.0.2.${i}`, vpnIP: `10.118.0.${i}`, vpnPubKey: key, wgPort: 51820, pubapiPort: 9000 });
const keyA = Buffer.alloc(32, 1).toString("base64");
const keyB = Buffer.alloc(32, 2).toString("base64");
const coordinator: PeerRecord = { role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 9).toString("base64"), wgPort: 51820, pubapiPort: 9000 };

describe("update loop", () => {
  it("fetches with its last version, applies only newer versions, and repairs every repairIntervalMs and after a failure", async () => {
    const versions: Array<PeerUpdate | Error> = [
      { resourceVersion: 1, peers: [peer(11, keyA)] },
      { resourceVersion: 1, peers: undefined },
      { resourceVersion: 2, peers: [peer(11, keyA), peer(12, keyB)] },
      { resourceVersion: 1, peers: [peer(11, keyA)] }, // an older view (a lagging Coordinator): skipped
      new Error("unreachable"),
    ];
    const asked: number[] = [];
    const applied: number[] = [];
    const repaired: number[] = [];
    const loop = new UpdateLoop({
      fetch: async (v) => {
        asked.push(v);
        const next = versions.shift()!;
        if (next instanceof Error) throw next;
        return next;
      },
      apply: async (_p, v) => {
        applied.push(v);
      },
      repair: async (_p, v) => {
        repaired.push(v);
      },
      intervalMs: 20,
      repairIntervalMs: 3_600_000,
      clock: systemClock,
      logger: nullLogger,
    });
    expect(await loop.pollNow()).toBe(1);
    expect(await loop.pollNow()).toBe(1);
    expect(await loop.pollNow()).toBe(2);
    expect(await loop.pollNow()).toBe(2);
    expect(asked).toEqual([0, 1, 1, 2]);
    expect(applied).toEqual([1, 2]);
    expect(repaired).toEqual([]);
    await expect(loop.pollNow()).rejects.toThrow("unreachable");
    loop.start(); // the next tick repairs: the failure may be a reset device that lost the route
    await until("a repair after the failure", () => repaired.length === 1);
    loop.stop();
    expect(repaired).toEqual([2]);
  });

  it("backs off with jitter after failures, and a poll that succeeds meanwhile (a trigger) ends the backoff at once (regression: minutes behind after an etcd outage)", async () => {
    let down = true;
    let fetches = 0;
    const waits: number[] = [];
    // Short sleeps pass at once; a long one (a backoff) lasts until it is aborted.
    const clock = {
      now: () => Date.now(),
      sleep: (ms: number, signal?: AbortSignal) =>
        new Promise<void>((resolve, reject) => {
          waits.push(ms);
          if (ms < 100) return void setTimeout(resolve, 1);
          signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
        }),
    };
    const loop = new UpdateLoop({
      fetch: async () => {
        fetches++;
        if (down) throw new Error("etcd quorum lost");
        return { resourceVersion: 7, peers: [peer(11, keyA)] };
      },
      apply: async () => {},
      intervalMs: 10,
      repairIntervalMs: 3_600_000,
      random: () => 0.99,
      clock,
      logger: nullLogger,
    });
    loop.start();
    await until("the loop to back off", () => waits.some((w) => w >= 100));
    expect(fetches).toBeGreaterThanOrEqual(3);
    down = false;
    expect(await loop.pollNow()).toBe(7); // the trigger: the Coordinators answer again
    // The backoff ended: the loop polls every interval again instead of sleeping on.
    const after = fetches;
    await until("the loop to poll again on its own", () => fetches >= after + 3, 2_000);
    loop.stop();
  });

  it("backoffMs doubles per failure up to the cap, spreads over the upper half, never below the interval", () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(1000);
    expect(backoffMs(1, 1000, 60_000, () => 0.999)).toBe(1999);
    expect(backoffMs(3, 1000, 60_000, () => 0.5)).toBe(6000);
    expect(backoffMs(40, 1000, 60_000, () => 0)).toBe(30_000);
    expect(backoffMs(40, 1000, 60_000, () => 1)).toBe(60_000);
    expect(backoffMs(2, 1000, 1000, () => 0)).toBe(1000);
  });

  it("concurrent pollNow calls never overlap", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let v = 0;
    const loop = new UpdateLoop({
      fetch: async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return { resourceVersion: ++v, peers: [] };
      },
      apply: async () => {},
      intervalMs: 1000,
      clock: systemClock,
      logger: nullLogger,
    });
    await Promise.all(Array.from({ length: 10 }, () => loop.pollNow()));
    expect(maxInFlight).toBe(1);
  });

  it("a flood of pollNow calls coalesces: one running poll, at most one waiting (bounded work per TriggerNodeUpdate/JoinCluster)", async () => {
    let fetches = 0;
    let release: (() => void) | undefined;
    const loop = new UpdateLoop({
      fetch: async () => {
        fetches++;
        await new Promise<void>((r) => (release = r));
        return { resourceVersion: fetches, peers: [] };
      },
      apply: async () => {},
      intervalMs: 1000,
      clock: systemClock,
      logger: nullLogger,
    });
    const first = loop.pollNow();
    await until("the first poll fetches", () => fetches === 1);
    const flood = Array.from({ length: 1000 }, () => loop.pollNow());
    release!();
    expect(await first).toBe(1);
    await until("the one waiting poll fetches", () => fetches === 2);
    release!();
    // Every flooded call shares the single waiting poll, which started after all of them.
    expect(new Set(await Promise.all(flood))).toEqual(new Set([2]));
    expect(fetches).toBe(2);
    // A call after the waiting poll started queues a new one (it must see changes made meanwhile).
    const later = loop.pollNow();
    await until("a third poll fetches", () => fetches === 3);
    release!();
    expect(await later).toBe(3);
  });

  it("a Node keeps one channel for all its polls and applies peers without itself", async () => {
    let dials = 0;
    let closed = 0;
    let version = 3;
    const client: CoordinatorClient = {
      getUpdate: async (v) => (v === version ? { resourceVersion: version, peers: undefined } : { resourceVersion: version, peers: [coordinator, peer(11, keyA), peer(12, keyB)] }),
      getDataKey: async () => Buffer.alloc(32),
      close: () => {
        closed++;
      },
    };
    const vpn = new FakeVPN("192.0.2.11", 51820);
    const node = new Node({
      vpnIP: "10.118.0.11",
      coordinatorVPNIPs: ["10.118.0.1"],
      dial: () => {
        dials++;
        return client;
      },
      vpn,
      updateIntervalMs: 1000,
      clock: systemClock,
      logger: nullLogger,
    });
    for (let i = 0; i < 5; i++) await node.update();
    version = 4;
    await node.update();
    expect(dials).toBe(1);
    expect(vpn.peers.map((p) => p.vpnIP).sort()).toEqual(["10.118.0.1", "10.118.0.12"]);
    expect(vpn.writes).toBe(1);
    node.close();
    expect(closed).toBe(1);
  });

  it("a Node fails over past silent Coordinators and tries them last next time: the one that lost its quorum and is back answers first (regression: a deadline per dead Coordinator on every poll)", async () => {
    const calls: string[] = [];
    let quorum = false;
    const dialed: string[] = [];
    const clientFor = (ip: string): CoordinatorClient => ({
      getUpdate: async () => {
        calls.push(ip);
        if (ip !== "10.118.0.3") throw new CoreError("deadline-exceeded", `vpnapi GetUpdate ${ip}: Deadline exceeded`);
        if (!quorum) throw new UnavailableError("etcd quorum lost");
        return { resourceVersion: 5, peers: [coordinator, peer(11, keyA)] };
      },
      getDataKey: async () => Buffer.alloc(32),
      close: () => {},
    });
    const node = new Node({
      vpnIP: "10.118.0.11",
      coordinatorVPNIPs: ["10.118.0.1", "10.118.0.2", "10.118.0.3"],
      dial: (ip) => {
        dialed.push(ip);
        return clientFor(ip);
      },
      vpn: new FakeVPN("192.0.2.11", 51820),
      updateIntervalMs: 4,
      clock: systemClock,
      logger: nullLogger,
    });
    await expect(node.update()).rejects.toThrow("quorum");
    expect(calls).toEqual(["10.118.0.1", "10.118.0.2", "10.118.0.3"]);
    calls.length = 0;
    await expect(node.update()).rejects.toThrow("quorum");
    expect(calls).toEqual(["10.118.0.3", "10.118.0.1", "10.118.0.2"]); // the one that answered first, the silent ones last
    calls.length = 0;
    quorum = true;
    expect(await node.update()).toBe(5);
    expect(calls).toEqual(["10.118.0.3"]);
    node.close();
  });
});
