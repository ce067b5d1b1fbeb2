import { describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { ResourceExhaustedError } from "../../src/core/errors.js";
import { allocateIP, coordinatorPool, ipOf, nodePool, offsetOf, releaseIP, type IPPool } from "../../src/core/ip-pool.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import { runTransaction } from "../../src/core/store.js";

describe("VPN IP pools", () => {
  const addr = [
    { offset: 1, ip: "10.118.0.1" },
    { offset: 11, ip: "10.118.0.11" },
    { offset: 256, ip: "10.118.1.0" },
    { offset: 65534, ip: "10.118.255.254" },
  ];
  for (const a of addr) it(`offset ${a.offset} ↔ ${a.ip}`, () => {
    expect(ipOf(a.offset)).toBe(a.ip);
    expect(offsetOf(a.ip)).toBe(a.offset);
  });
  it("rejects addresses outside the VPN", () => {
    for (const ip of ["10.119.0.1", "10.118.256.1", "1.2.3.4", "10.118.0"]) expect(offsetOf(ip)).toBeUndefined();
  });

  it("Coordinators get 10.118.0.1-10, then a clear exhaustion error", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    const got = [];
    for (let i = 0; i < 10; i++) got.push(await cs.allocateCoordinatorIP());
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `10.118.0.${i + 1}`));
    await expect(cs.allocateCoordinatorIP()).rejects.toThrow(ResourceExhaustedError);
    await expect(cs.allocateCoordinatorIP()).rejects.toThrow(/ip pool coordinators: exhausted \(all of 10.118.0.1 to 10.118.0.10 are in use\)/);
  });

  it("Nodes start at 10.118.0.11 and released addresses are reused lowest first", async () => {
    const st = await MemoryStore.open();
    const a = await runTransaction(st, (tx) => allocateIP(tx, nodePool));
    const b = await runTransaction(st, (tx) => allocateIP(tx, nodePool));
    expect([a, b]).toEqual(["10.118.0.11", "10.118.0.12"]);
    await runTransaction(st, async (tx) => releaseIP(tx, nodePool, a));
    expect(await runTransaction(st, (tx) => allocateIP(tx, nodePool))).toBe(a);
    expect(await runTransaction(st, (tx) => allocateIP(tx, nodePool))).toBe("10.118.0.13");
  });

  it("never hands out the same address twice under concurrent allocation", async () => {
    const st = await MemoryStore.open();
    const small: IPPool = { name: "small", first: 11, last: 60 };
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => runTransaction(st, (tx) => allocateIP(tx, small))));
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    expect(ok).toHaveLength(50);
    expect(new Set(ok).size).toBe(50);
    const errs = results.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
    expect(errs.every((e) => e.includes("exhausted"))).toBe(true);
  });

  it("the pools do not overlap", () => {
    expect(coordinatorPool.last).toBeLessThan(nodePool.first);
  });
});
