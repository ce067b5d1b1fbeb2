// The VM tier's pure harness logic (no VM needed): /proc parsing, waits that tell slow from
// stuck, the program image's entries and cache key.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { imageEntries, skipped, treeKey } from "./image.js";
import { guestStatsScript, hostProcStats, parseGuestStats, parseProcIo, parseProcStat } from "./procstat.js";
import { GuestProcess, type GuestHost } from "./guest-process.js";
import { VmError, waitWithProgress } from "./wait.js";

describe("procstat", () => {
  it("reads utime + stime after the comm field, even when comm holds spaces and parentheses", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // field numbers 3..52
    fields[11] = "250"; // utime (field 14)
    fields[12] = "50"; // stime (field 15)
    expect(parseProcStat(`1234 (CPU 0/TCG) x) ${fields.join(" ")}`)).toBe(3);
    expect(() => parseProcStat("garbage")).toThrow(/not a \/proc/);
  });

  it("reads rchar and syscr from /proc/<pid>/io", () => {
    expect(parseProcIo("rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\n")).toEqual({ rchar: 6976, syscr: 10 });
    expect(parseProcIo("")).toEqual({ rchar: 0, syscr: 0 });
  });

  it("reads this process on the host, and parses the guest script's output", () => {
    const s = hostProcStats(process.pid);
    expect(s?.cpuS).toBeGreaterThan(0);
    expect(hostProcStats(undefined)).toBeUndefined();
    const fields = Array.from({ length: 50 }, () => "0");
    fields[11] = "100";
    expect(parseGuestStats(`7 (node) ${fields.join(" ")}\n--\nrchar: 5\nsyscr: 2\n`)).toEqual({ cpuS: 1, rchar: 5, syscr: 2 });
    expect(guestStatsScript("/run/vm/meshd.pid")).toContain("/proc/$p/io");
  });
});

describe("waitWithProgress", () => {
  it("keeps waiting past the stall window while progress changes, and resolves", async () => {
    let n = 0;
    const t0 = Date.now();
    const v = await waitWithProgress(() => (Date.now() - t0 > 400 ? "done" : undefined), {
      what: "x", stallMs: 150, maxMs: 5_000, intervalMs: 10, progressEveryMs: 20, progress: () => String(++n),
    });
    expect(v).toBe("done");
  });

  it("fails fast as stalled when progress stops, with the diagnosis", async () => {
    const t0 = Date.now();
    const err = await waitWithProgress(() => undefined, {
      what: "meshd on coord to serve", stallMs: 200, maxMs: 10_000, intervalMs: 10, progressEveryMs: 20,
      progress: () => (Date.now() - t0 < 100 ? String(Date.now()) : "frozen"), diagnose: () => "=== diagnosis of coord",
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmError);
    expect((err as VmError).kind).toBe("timeout");
    expect((err as VmError).message).toMatch(/^stalled: no progress for 200 ms waiting for meshd on coord to serve[^]*last progress: frozen[^]*=== diagnosis of coord/);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("an unanswered progress probe is not progress", async () => {
    const err = await waitWithProgress(() => undefined, {
      what: "y", stallMs: 150, maxMs: 10_000, intervalMs: 10, progressEveryMs: 20, progress: () => undefined,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^stalled: .*last progress: none/);
  });

  it("gives up at maxMs however much progress there is, and on abort at once", async () => {
    let n = 0;
    const err = await waitWithProgress(() => undefined, {
      what: "z", stallMs: 1_000, maxMs: 150, intervalMs: 10, progressEveryMs: 10, progress: () => String(++n),
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^timed out after 150 ms waiting for z \(still progressing/);
    const aborted = await waitWithProgress(() => undefined, {
      what: "w", stallMs: 1_000, maxMs: 5_000, progress: () => "1", abort: () => "QEMU exited with code 1", diagnose: async () => "diag",
    }).catch((e: unknown) => e);
    expect((aborted as VmError).kind).toBe("exited");
    expect((aborted as VmError).message).toMatch(/QEMU exited with code 1\ndiag$/);
  });

  it("a diagnosis that throws does not hide the failure", async () => {
    const err = await waitWithProgress(() => undefined, {
      what: "v", stallMs: 50, maxMs: 5_000, intervalMs: 10, progressEveryMs: 10, progress: () => "same",
      diagnose: () => {
        throw new Error("agent gone");
      },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^stalled[^]*\(diagnosis failed: agent gone\)/);
  });
});

describe("GuestProcess.waitFor", () => {
  /** host is a VM whose agent never answers and whose QEMU burns `cpuPerLook` s of CPU between looks. */
  const host = (shareDir: string, cpuPerLook: number): GuestHost => {
    let cpu = 0;
    return {
      name: "coord", shareDir,
      exec: () => Promise.reject(new Error("agent: no answer")),
      run: () => Promise.reject(new Error("agent: no answer")),
      serialTail: () => "",
      diagnose: async () => "=== diagnosis of coord",
      qemuStats: () => ({ cpuS: (cpu += cpuPerLook), rchar: 0, syscr: 0 }),
    };
  };
  const dir = mkdtempSync(join(tmpdir(), "am-gp-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a guest too busy to answer its agent, whose vCPU keeps running, is slow, not stalled", async () => {
    const p = new GuestProcess(host(dir, 10), "meshd", "/run/vm/share");
    const t0 = Date.now();
    await p.waitFor("meshd to serve", () => (Date.now() - t0 > 600 ? true : undefined), { stallMs: 250, maxMs: 5_000, intervalMs: 10, progressEveryMs: 20, statsEveryMs: 20 });
  });

  it("a silent guest whose vCPU idles is stalled", async () => {
    const p = new GuestProcess(host(dir, 0), "meshd", "/run/vm/share");
    const err = await p.waitFor("meshd to serve", () => undefined, { stallMs: 250, maxMs: 5_000, intervalMs: 10, progressEveryMs: 20, statsEveryMs: 20 }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^stalled: no progress for 250 ms/);
  });
});

describe("program image inputs", () => {
  const dir = mkdtempSync(join(tmpdir(), "am-vm-image-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("lists node and the checkout's runtime paths by real path, without missing or nested ones", () => {
    const repo = join(dir, "repo");
    const modules = join(dir, "shared-modules");
    for (const d of ["bin", "dist/src", modules]) mkdirSync(join(repo, d), { recursive: true });
    mkdirSync(modules, { recursive: true });
    symlinkSync(modules, join(repo, "node_modules"));
    writeFileSync(join(repo, "package.json"), "{}");
    const node = join(dir, "node");
    writeFileSync(node, "");
    expect(imageEntries(repo, node)).toEqual([join(repo, "bin"), join(repo, "dist"), join(repo, "package.json"), node, modules].sort());
  });

  it("the cache key changes when a file's size or mtime changes, and only then", () => {
    const t = join(dir, "tree");
    mkdirSync(join(t, "a"), { recursive: true });
    writeFileSync(join(t, "a", "f.js"), "one");
    const k1 = treeKey([t]);
    expect(treeKey([t])).toBe(k1);
    utimesSync(join(t, "a", "f.js"), new Date(2020, 1, 1), new Date(2020, 1, 1));
    const k2 = treeKey([t]);
    expect(k2).not.toBe(k1);
    writeFileSync(join(t, "a", "f.js"), "three");
    utimesSync(join(t, "a", "f.js"), new Date(2020, 1, 1), new Date(2020, 1, 1));
    expect(treeKey([t])).not.toBe(k2);
  });

  it("leaves tool caches in node_modules (vitest's .vite results) out of the key", () => {
    const m = join(dir, "m", "node_modules");
    mkdirSync(join(m, ".vite", "vitest"), { recursive: true });
    mkdirSync(join(m, "pkg"), { recursive: true });
    const k = treeKey([m]);
    writeFileSync(join(m, ".vite", "vitest", "results.json"), "{}");
    expect(treeKey([m])).toBe(k);
    expect(skipped(join(m, ".bin"))).toBe(false);
    expect(skipped(join(m, ".package-lock.json"))).toBe(true);
    expect(skipped(join(m, "pkg", ".eslintrc"))).toBe(false);
  });
});
