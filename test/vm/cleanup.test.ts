import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { VmNetwork } from "./network.js";
import { canRunVM, repoRoot } from "./vm.js";
import { waitUntil } from "./wait.js";

const reason = canRunVM();

/** localImports lists `entry` and every repository file it imports, transitively (relative ".js" imports). */
function localImports(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of readFileSync(join(repoRoot, file), "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)\.js"/g)) {
      visit(relative(repoRoot, resolve(repoRoot, dirname(file), `${m[1]}.ts`)));
    }
  };
  visit(entry);
  return [...seen];
}

/**
 * A plain node child that starts a VM and reports as soon as QEMU runs (the guest is mid-boot);
 * SIGUSR1 makes it call process.exit(3).
 */
const driver = `
import { existsSync, statSync } from "node:fs";
import { VmCluster } from "./test/vm/vm.js";
const c = await VmCluster.create();
const vm = c.add({ name: "victim" });
vm.start().catch(() => undefined);
const poll = setInterval(() => {
  if (!existsSync(vm.serialLog) || statSync(vm.serialLog).size === 0) return;
  clearInterval(poll);
  process.stdout.write(JSON.stringify({ ns: c.network.ns, workDir: c.workDir }) + "\\n");
}, 50);
process.on("SIGUSR1", () => process.exit(3));
setInterval(() => {}, 1000);
`;

const pidsIn = (ns: string): number[] =>
  spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout.split(/\s+/).filter(Boolean).map(Number);
const namespaces = (): string[] =>
  spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));

describe.skipIf(reason !== undefined)(`vm harness teardown${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let dir: string;

  beforeAll(() => {
    // Transpile the harness and what it imports so a plain node child can run it.
    dir = mkdtempSync(join(tmpdir(), "am-vm-driver-"));
    for (const file of localImports("test/vm/vm.ts")) {
      const out = ts.transpileModule(readFileSync(join(repoRoot, file), "utf8"), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file.replace(/\.ts$/, ".js")), out.outputText);
    }
    writeFileSync(join(dir, "package.json"), '{"type":"module"}');
    writeFileSync(join(dir, "driver.js"), driver);
    symlinkSync(join(repoRoot, "node_modules"), join(dir, "node_modules"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function runDriver(mode: "signal" | "exit" | "sigkill") {
    const child = spawn(process.execPath, [join(dir, "driver.js"), mode], { cwd: dir, stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<{ signal: string | null; code: number | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    const info = await new Promise<{ ns: string; workDir: string }>((resolve, reject) => {
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        if (buf.includes("\n")) resolve(JSON.parse(buf.split("\n")[0]));
      });
      child.on("exit", (code) => reject(new Error(`driver exited early (${code})`)));
    });
    const pids = pidsIn(info.ns);
    expect(pids.length, "QEMU and swtpm run in the namespace").toBeGreaterThanOrEqual(2);
    child.kill(mode === "signal" ? "SIGTERM" : mode === "sigkill" ? "SIGKILL" : "SIGUSR1");
    return { ...info, pids, ...(await exited) };
  }

  for (const mode of ["signal", "exit"] as const) {
    it(`${mode === "signal" ? "SIGTERM" : "process.exit"} mid-boot: QEMU, swtpm, namespace and work dir are gone`, async () => {
      const r = await runDriver(mode);
      if (mode === "signal") expect(r.signal).toBe("SIGTERM");
      else expect(r.code).toBe(3);
      expect(r.pids.filter(alive)).toEqual([]);
      expect(namespaces()).not.toContain(r.ns);
      expect(existsSync(r.workDir)).toBe(false);
    }, 60_000);
  }

  it("SIGKILL: QEMU and swtpm die with the test process; the next harness sweeps the namespace and work dir", async () => {
    const r = await runDriver("sigkill");
    expect(r.signal).toBe("SIGKILL");
    await waitUntil(() => (r.pids.some(alive) ? undefined : true), { timeoutMs: 10_000, what: "QEMU and swtpm to die (pdeathsig)" });
    VmNetwork.create().destroy();
    expect(namespaces()).not.toContain(r.ns);
    expect(existsSync(r.workDir)).toBe(false);
  }, 60_000);
});
