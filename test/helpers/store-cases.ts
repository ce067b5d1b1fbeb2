/**
 * storeCases: the behaviour every core Store must share (memory store, etcd store), as a table.
 * Each case gets a fresh, empty store; a test file runs them with
 * `for (const tc of storeCases) it(tc.name, async () => tc.run(await openEmptyStore()))`.
 */
import { expect } from "vitest";
import { ConflictError } from "../../src/core/errors.js";
import { runTransaction, type Store } from "../../src/core/store.js";

/** StoreCase is one behavioural case run against a fresh, empty store. */
export interface StoreCase {
  name: string;
  run(st: Store): Promise<void>;
}

const b = (s: string): Buffer => Buffer.from(s);
const s = (v: Uint8Array | undefined): string | undefined => (v ? Buffer.from(v).toString() : undefined);
const put = (st: Store, key: string, value: string) => runTransaction(st, async (tx) => tx.put(key, b(value)));
const del = (st: Store, key: string) => runTransaction(st, async (tx) => tx.delete(key));
const keysOf = (entries: Array<[string, Uint8Array]>) => entries.map(([k]) => k);

/** storeCases is the shared table; keep memory-only behaviour (persistence) out of it. */
export const storeCases: StoreCase[] = [
  {
    name: "commit applies all writes; reads see own writes",
    async run(st) {
      const tx = await st.begin();
      tx.put("a/1", b("x"));
      tx.put("a/2", b("y"));
      expect(s(await tx.get("a/1"))).toBe("x");
      expect(keysOf(await tx.list("a/"))).toEqual(["a/1", "a/2"]);
      expect(await st.get("a/1")).toBeUndefined();
      await tx.commit();
      expect((await st.list("a/")).map(([k, v]) => [k, s(v)])).toEqual([["a/1", "x"], ["a/2", "y"]]);
    },
  },
  {
    name: "own deletes hide keys from get and list before commit",
    async run(st) {
      await put(st, "d/1", "1");
      await put(st, "d/2", "2");
      const tx = await st.begin();
      tx.delete("d/1");
      tx.put("d/3", b("3"));
      expect(await tx.get("d/1")).toBeUndefined();
      expect(keysOf(await tx.list("d/"))).toEqual(["d/2", "d/3"]);
      await tx.commit();
      expect(keysOf(await st.list("d/"))).toEqual(["d/2", "d/3"]);
    },
  },
  {
    name: "rollback leaves no trace and ends the transaction",
    async run(st) {
      await put(st, "keep", "1");
      const tx = await st.begin();
      tx.put("gone", b("2"));
      tx.delete("keep");
      tx.rollback();
      expect(await st.get("gone")).toBeUndefined();
      expect(s(await st.get("keep"))).toBe("1");
      await expect(tx.commit()).rejects.toThrow(/already committed or rolled back/);
    },
  },
  {
    name: "a function that throws inside runTransaction writes nothing",
    async run(st) {
      await expect(runTransaction(st, async (tx) => {
        tx.put("k", b("v"));
        throw new Error("boom");
      })).rejects.toThrow("boom");
      expect(await st.get("k")).toBeUndefined();
    },
  },
  {
    name: "values are bytes; list is sorted by key and bounded by the exact prefix",
    async run(st) {
      await runTransaction(st, async (tx) => {
        for (const k of ["p/b", "p/a", "p/10", "p/1", "px", "p", "q/1"]) tx.put(k, b(k));
        tx.put("p/bin", Buffer.from([0, 255, 7, 0]));
      });
      expect(keysOf(await st.list("p/"))).toEqual(["p/1", "p/10", "p/a", "p/b", "p/bin"]);
      expect(keysOf(await st.list("p/1"))).toEqual(["p/1", "p/10"]);
      expect(keysOf(await st.list(""))).toEqual(["p", "p/1", "p/10", "p/a", "p/b", "p/bin", "px", "q/1"]);
      expect(Buffer.from((await st.get("p/bin"))!)).toEqual(Buffer.from([0, 255, 7, 0]));
    },
  },
  {
    name: "conflicting commits: the second one fails, runTransaction retries 20 concurrent increments",
    async run(st) {
      const t1 = await st.begin();
      const t2 = await st.begin();
      await t1.get("counter");
      await t2.get("counter");
      t1.put("counter", b("1"));
      t2.put("counter", b("1"));
      await t1.commit();
      await expect(t2.commit()).rejects.toBeInstanceOf(ConflictError);

      const incr = () => runTransaction(st, async (tx) => {
        const v = Number(s(await tx.get("counter")) ?? "0");
        tx.put("counter", b(String(v + 1)));
      });
      await Promise.all(Array.from({ length: 20 }, incr));
      expect(s(await st.get("counter"))).toBe("21");
    },
  },
  {
    name: "a read key conflicts when it is deleted, and a missing one when it is created",
    async run(st) {
      await put(st, "k", "1");
      const t1 = await st.begin();
      expect(s(await t1.get("k"))).toBe("1");
      await del(st, "k");
      t1.put("other", b("1"));
      await expect(t1.commit()).rejects.toBeInstanceOf(ConflictError);

      const t2 = await st.begin();
      expect(await t2.get("k")).toBeUndefined();
      await put(st, "k", "2");
      t2.put("other", b("2"));
      await expect(t2.commit()).rejects.toBeInstanceOf(ConflictError);
    },
  },
  {
    name: "a listed prefix conflicts when a key under it appears",
    async run(st) {
      const t1 = await st.begin();
      await t1.list("p/");
      await put(st, "p/new", "1");
      t1.put("x", b("1"));
      await expect(t1.commit()).rejects.toBeInstanceOf(ConflictError);
    },
  },
  {
    name: "a listed prefix conflicts when a key under it changes or is deleted",
    async run(st) {
      await put(st, "p/1", "1");
      await put(st, "p/2", "2");
      const t1 = await st.begin();
      expect(keysOf(await t1.list("p/"))).toEqual(["p/1", "p/2"]);
      await put(st, "p/1", "changed");
      t1.put("x", b("1"));
      await expect(t1.commit()).rejects.toBeInstanceOf(ConflictError);

      const t2 = await st.begin();
      expect(keysOf(await t2.list("p/"))).toEqual(["p/1", "p/2"]);
      await del(st, "p/2");
      t2.put("x", b("2"));
      await expect(t2.commit()).rejects.toBeInstanceOf(ConflictError);
    },
  },
  {
    name: "a listed prefix does not conflict with writes outside it",
    async run(st) {
      await put(st, "p/1", "1");
      const tx = await st.begin();
      await tx.list("p/");
      await put(st, "px", "1");
      await put(st, "q/1", "1");
      await put(st, "p", "1");
      tx.put("p/2", b("2"));
      await tx.commit();
      expect(keysOf(await st.list("p/"))).toEqual(["p/1", "p/2"]);
    },
  },
  {
    name: "a read-only commit fails when what it read changed; blind writes never conflict",
    async run(st) {
      const reader = await st.begin();
      await reader.get("k");
      await put(st, "k", "1");
      await expect(reader.commit()).rejects.toBeInstanceOf(ConflictError);

      const w1 = await st.begin();
      const w2 = await st.begin();
      w1.put("k", b("w1"));
      w2.put("k", b("w2"));
      await w1.commit();
      await w2.commit();
      expect(s(await st.get("k"))).toBe("w2");
    },
  },
];
