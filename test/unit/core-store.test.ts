import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConflictError } from "../../src/core/errors.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import { runTransaction } from "../../src/core/store.js";

const b = (s: string): Buffer => Buffer.from(s);
const s = (v: Uint8Array | undefined): string | undefined => (v ? Buffer.from(v).toString() : undefined);

describe("memory store transactions", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-store-"));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("commit applies all writes; reads see own writes", async () => {
    const st = await MemoryStore.open();
    const tx = await st.begin();
    tx.put("a/1", b("x"));
    tx.put("a/2", b("y"));
    expect(s(await tx.get("a/1"))).toBe("x");
    expect((await tx.list("a/")).map(([k]) => k)).toEqual(["a/1", "a/2"]);
    expect(await st.get("a/1")).toBeUndefined();
    await tx.commit();
    expect((await st.list("a/")).map(([k, v]) => [k, s(v)])).toEqual([["a/1", "x"], ["a/2", "y"]]);
  });

  it("rollback leaves no trace", async () => {
    const st = await MemoryStore.open({ file: join(dir, "store.json") });
    await runTransaction(st, async (tx) => tx.put("keep", b("1")));
    const before = await readFile(join(dir, "store.json"), "utf8");
    const tx = await st.begin();
    tx.put("gone", b("2"));
    tx.delete("keep");
    tx.rollback();
    expect(await st.get("gone")).toBeUndefined();
    expect(s(await st.get("keep"))).toBe("1");
    expect(await readFile(join(dir, "store.json"), "utf8")).toBe(before);
    await expect(tx.commit()).rejects.toThrow(/already committed or rolled back/);
  });

  it("a function that throws inside runTransaction writes nothing", async () => {
    const st = await MemoryStore.open();
    await expect(runTransaction(st, async (tx) => {
      tx.put("k", b("v"));
      throw new Error("boom");
    })).rejects.toThrow("boom");
    expect(await st.get("k")).toBeUndefined();
  });

  it("conflicting commits: the second one fails, runTransaction retries", async () => {
    const st = await MemoryStore.open();
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
  });

  it("a listed prefix conflicts when a key under it appears", async () => {
    const st = await MemoryStore.open();
    const t1 = await st.begin();
    await t1.list("p/");
    await runTransaction(st, async (tx) => tx.put("p/new", b("1")));
    t1.put("x", b("1"));
    await expect(t1.commit()).rejects.toBeInstanceOf(ConflictError);
  });

  it("persists atomically with mode 0600 and reloads", async () => {
    const file = join(dir, "sub", "store.json");
    const st = await MemoryStore.open({ file });
    await runTransaction(st, async (tx) => {
      tx.put("a", b("1"));
      tx.put("bin", Buffer.from([0, 255, 7]));
    });
    await st.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await MemoryStore.open({ file });
    expect(s(await again.get("a"))).toBe("1");
    expect(Buffer.from((await again.get("bin"))!)).toEqual(Buffer.from([0, 255, 7]));
  });

  it("a corrupt file is refused with a clear error", async () => {
    const file = join(dir, "store.json");
    await (await import("node:fs/promises")).writeFile(file, "{nope");
    await expect(MemoryStore.open({ file })).rejects.toThrow(/store.json is corrupt/);
  });

  /** twoCommits makes a store file whose current state has a=2 and whose previous copy has a=1. */
  async function twoCommits(file: string): Promise<void> {
    const st = await MemoryStore.open({ file });
    await runTransaction(st, async (tx) => tx.put("a", b("1")));
    await runTransaction(st, async (tx) => tx.put("a", b("2")));
    await st.close();
  }

  it("a truncated file (a torn write) is refused, naming the last good copy it kept; nothing is overwritten", async () => {
    const file = join(dir, "store.json");
    await twoCommits(file);
    const text = await readFile(file, "utf8");
    await writeFile(file, text.slice(0, text.length / 2));
    await expect(MemoryStore.open({ file })).rejects.toThrow(/store\.json is corrupt \(not JSON: a torn or damaged write\).*store\.json\.prev/);
    expect(await readFile(file, "utf8")).toBe(text.slice(0, text.length / 2));
    // The previous copy is a good store: moved into place, it opens.
    const prev = await MemoryStore.open({ file: `${file}.prev` });
    expect(s(await prev.get("a"))).toBe("1");
  });

  it("a flipped byte inside a value is caught by the checksum", async () => {
    const file = join(dir, "store.json");
    await twoCommits(file);
    const raw = JSON.parse(await readFile(file, "utf8")) as { entries: Record<string, string> };
    raw.entries.a = Buffer.from("3").toString("base64"); // still valid JSON and base64: only the checksum tells
    await writeFile(file, JSON.stringify(raw));
    await expect(MemoryStore.open({ file })).rejects.toThrow(/checksum mismatch/);
  });

  it("ENOSPC during a commit: the RPC fails with the cause, the previous state stays (in memory and on disk)", async () => {
    const file = join(dir, "store.json");
    let full = false;
    const st = await MemoryStore.open({
      file,
      write: async (f, data) => {
        if (full) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        await writeFile(f, data, { mode: 0o600 });
      },
    });
    await runTransaction(st, async (tx) => tx.put("a", b("1")));
    full = true;
    await expect(runTransaction(st, async (tx) => tx.put("a", b("2")))).rejects.toThrow(/persist to .*store\.json: ENOSPC: no space left on device.*the commit was not made/);
    expect(s(await st.get("a"))).toBe("1");
    full = false;
    await runTransaction(st, async (tx) => tx.put("b", b("x")));
    await st.close();
    const again = await MemoryStore.open({ file });
    expect([s(await again.get("a")), s(await again.get("b"))]).toEqual(["1", "x"]);
  });
});
