import { describe, expect, it } from "vitest";
import { HandshakeLimiter } from "../../src/atls/limiter.js";
import type { Clock } from "../../src/core/clock.js";
import { KeyedTokenBuckets } from "../../src/core/token-bucket.js";

class ManualClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

describe("KeyedTokenBuckets", () => {
  it("allows a burst per key, then refills at perSecond", () => {
    const clock = new ManualClock();
    const b = new KeyedTokenBuckets({ burst: 3, perSecond: 2, clock });
    expect([1, 2, 3, 4].map(() => b.take("a"))).toEqual([true, true, true, false]);
    expect(b.take("b")).toBe(true); // another caller has its own bucket
    clock.t += 499;
    expect(b.take("a")).toBe(false);
    clock.t += 1;
    expect(b.take("a")).toBe(true);
    clock.t += 60_000;
    expect([1, 2, 3, 4].map(() => b.take("a"))).toEqual([true, true, true, false]); // never above burst
  });

  it("tracks at most maxKeys callers (memory bounded), forgetting the least recently used", () => {
    const b = new KeyedTokenBuckets({ burst: 1, perSecond: 1, maxKeys: 3, clock: new ManualClock() });
    for (const k of ["a", "b", "c", "d"]) b.take(k);
    expect(b.size).toBe(3);
    expect(b.take("a")).toBe(true); // "a" was forgotten: a fresh bucket
    expect(b.take("d")).toBe(false);
  });
});

describe("HandshakeLimiter", () => {
  const gate = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => (open = r));
    return { p, open };
  };

  it("runs maxConcurrent at once, queues maxQueued, refuses the rest at once as busy", async () => {
    const l = new HandshakeLimiter({ maxConcurrent: 2, maxQueued: 1, maxPerSource: 10 });
    const g = gate();
    let running = 0;
    const job = () => l.run("198.18.0.9", async () => {
      running++;
      await g.p;
      running--;
      return "done";
    });
    const accepted = [job(), job(), job()];
    await expect(job()).rejects.toMatchObject({ name: "ATLSError", check: "busy", message: expect.stringMatching(/server busy: 2 handshakes running and 1 waiting/) });
    await Promise.resolve();
    expect(running).toBe(2);
    expect(l.stats).toMatchObject({ running: 2, queued: 1, refused: 1 });
    g.open();
    expect(await Promise.all(accepted)).toEqual(["done", "done", "done"]);
    expect(l.stats).toMatchObject({ running: 0, queued: 0, peakRunning: 2 });
  });

  it("caps one source's waiting handshakes so a flooder cannot fill the queue; a failing job frees its slot", async () => {
    const l = new HandshakeLimiter({ maxConcurrent: 1, maxQueued: 10, maxPerSource: 2 });
    const g = gate();
    const flooder = [l.run("a", () => g.p), l.run("a", () => g.p), l.run("a", () => g.p)];
    await expect(l.run("a", () => g.p)).rejects.toThrow(/2 handshakes from a waiting/);
    const other = l.run("b", async () => "b served");
    g.open();
    await Promise.all(flooder);
    expect(await other).toBe("b served");
    await expect(l.run("a", () => Promise.reject(new Error("quote failed")))).rejects.toThrow("quote failed");
    expect(await l.run("a", async () => 1)).toBe(1);
    expect(l.stats.running).toBe(0);
  });
});
