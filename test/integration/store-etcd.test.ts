import { Etcd3 } from "etcd3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { ConflictError, UnavailableError } from "../../src/core/errors.js";
import { runTransaction } from "../../src/core/store.js";
import { EtcdStore, type EtcdStoreOptions } from "../../src/store/store-etcd.js";
import { closedPort, startEtcd, type Etcd } from "../helpers/etcd.js";
import { storeCases } from "../helpers/store-cases.js";

const b = (s: string): Buffer => Buffer.from(s);
const s = (v: Uint8Array | undefined): string | undefined => (v ? Buffer.from(v).toString() : undefined);

let etcd: Etcd;
const open: EtcdStore[] = [];
let namespaces = 0;

/** openStore opens a store on the test etcd, in a fresh namespace unless one is given; closed after each test. */
async function openStore(options: Partial<EtcdStoreOptions> = {}): Promise<EtcdStore> {
  const st = await EtcdStore.open({ endpoints: [etcd.endpoint], namespace: `test-${process.pid}-${++namespaces}/`, ...options });
  open.push(st);
  return st;
}

beforeAll(async () => {
  etcd = await startEtcd();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((st) => st.close()));
});
afterAll(async () => etcd?.stop());

describe("etcd store: shared store cases", () => {
  for (const tc of storeCases) it(tc.name, async () => tc.run(await openStore()));
});

describe("etcd store", () => {
  it("reads of one transaction form a snapshot at its first read's revision", async () => {
    const st = await openStore();
    await runTransaction(st, async (tx) => tx.put("a", b("1")));
    const tx = await st.begin();
    expect(s(await tx.get("a"))).toBe("1");
    await runTransaction(st, async (tx2) => {
      tx2.put("a", b("2"));
      tx2.put("p/new", b("1"));
    });
    expect(s(await tx.get("a"))).toBe("1");
    expect(await tx.list("p/")).toEqual([]);
    tx.rollback();
    expect(s(await st.get("a"))).toBe("2");
  });

  it("a snapshot revision compacted away: reads fall back to the current state, the commit conflicts, runTransaction reruns", async () => {
    const st = await openStore();
    await runTransaction(st, async (tx) => tx.put("a", b("1")));
    let attempts = 0;
    await runTransaction(st, async (tx) => {
      attempts++;
      await tx.get("a");
      if (attempts === 1) {
        await runTransaction(st, async (tx2) => tx2.put("a", b("2")));
        const admin = new Etcd3({ hosts: [etcd.endpoint] });
        try {
          const { header } = await admin.kv.range({ key: b("any") });
          await admin.kv.compact({ revision: header.revision, physical: true });
        } finally {
          admin.close();
        }
      }
      tx.put("b", (await tx.get("a"))!);
    });
    expect(attempts).toBe(2);
    expect(s(await st.get("b"))).toBe("2");
  });

  it("namespaces keep stores on one etcd apart; a delete leaves a tombstone outside the data", async () => {
    const ns = `test-${process.pid}-shared/`;
    const [one, two, other] = [await openStore({ namespace: ns }), await openStore({ namespace: ns }), await openStore()];
    await runTransaction(one, async (tx) => {
      tx.put("k", b("1"));
      tx.put("gone", b("x"));
    });
    await runTransaction(one, async (tx) => tx.delete("gone"));
    expect(s(await two.get("k"))).toBe("1");
    expect((await two.list("")).map(([k]) => k)).toEqual(["k"]);
    expect(await other.get("k")).toBeUndefined();
  });

  it("two transactions on two clients: the loser gets a retryable ConflictError", async () => {
    const ns = `test-${process.pid}-race/`;
    const [one, two] = [await openStore({ namespace: ns }), await openStore({ namespace: ns })];
    const [t1, t2] = [await one.begin(), await two.begin()];
    await t1.list("ippool/");
    await t2.list("ippool/");
    t1.put("ippool/a", b("1"));
    t2.put("ippool/b", b("1"));
    await t1.commit();
    const err = await t2.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as ConflictError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/prefixes: ippool\//);
  });

  it("two Coordinators allocating VPN IPs concurrently never hand out the same IP", async () => {
    const ns = `test-${process.pid}-ips/`;
    const coordinators = [new ClusterStore(await openStore({ namespace: ns })), new ClusterStore(await openStore({ namespace: ns }))];
    const perCoordinator = 15;
    const first = await Promise.all(coordinators.map((c) => Promise.all(Array.from({ length: perCoordinator }, () => c.allocateNodeIP()))));
    const ips = first.flat();
    expect(new Set(ips).size).toBe(ips.length);
    // Release a few and allocate again from both: the freed-list path (a listed prefix) races too.
    const released = ips.slice(0, 6);
    for (const ip of released) await coordinators[0].releaseNodeIP(ip);
    const again = (await Promise.all(coordinators.map((c) => Promise.all(Array.from({ length: 5 }, () => c.allocateNodeIP()))))).flat();
    expect(new Set(again).size).toBe(again.length);
    const stillHeld = ips.filter((ip) => !released.includes(ip));
    expect(again.filter((ip) => stillHeld.includes(ip))).toEqual([]);
    expect(again.filter((ip) => released.includes(ip)).sort()).toEqual([...released].sort());
  });

  it("etcd unreachable: open fails fast with an UnavailableError naming the endpoint", async () => {
    const endpoint = `127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    const err = await EtcdStore.open({ endpoints: [endpoint], dialTimeoutMs: 400 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).retryable).toBe(true);
    expect((err as Error).message).toContain(endpoint);
    expect((err as Error).message).toMatch(/within 400 ms.*(UNAVAILABLE|ECONNREFUSED)/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("etcd going away: calls fail with an UnavailableError naming the endpoint, the store can be closed", async () => {
    const lost = await startEtcd();
    try {
      const st = await openStore({ endpoints: [lost.endpoint], callTimeoutMs: 1000 });
      await runTransaction(st, async (tx) => tx.put("k", b("1")));
      const tx = await st.begin();
      await tx.get("k");
      tx.put("k", b("2"));
      await lost.stop();
      for (const call of [() => st.get("k"), () => st.list(""), () => tx.commit()]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UnavailableError);
        expect((err as Error).message).toContain(lost.endpoint);
      }
    } finally {
      await lost.stop();
    }
  });

  it("one endpoint: no circuit breaker pauses calls after failures, so the first call after etcd answers again works (regression: local reads refused for seconds)", async () => {
    const flaky = await startEtcd();
    const pid = Number((await import("node:child_process")).execFileSync("pgrep", ["-f", `data-dir[= ]${flaky.dataDir}`]).toString().trim().split("\n")[0]);
    try {
      const st = await openStore({ endpoints: [flaky.endpoint], callTimeoutMs: 200 });
      await runTransaction(st, async (tx) => tx.put("k", b("1")));
      process.kill(pid, "SIGSTOP");
      for (let i = 0; i < 8; i++) expect(await st.get("k", { local: true }).catch((e: unknown) => e)).toBeInstanceOf(UnavailableError);
      process.kill(pid, "SIGCONT");
      expect(s(await st.get("k", { local: true }))).toBe("1");
      expect(s(await st.get("k"))).toBe("1");
    } finally {
      process.kill(pid, "SIGCONT");
      await flaky.stop();
    }
  });
});
