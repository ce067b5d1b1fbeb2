import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canRunE2E, NetnsHarness } from "../helpers/netns.js";

const reason = canRunE2E();
const repo = join(import.meta.dirname, "..", "..");

/** A child process that builds a harness (a node, a process inside it, a socket file) and then waits. */
const driver = `
import { spawn } from "node:child_process";
import { writeFileSync, mkdirSync } from "node:fs";
import { NetnsHarness } from "./test/helpers/netns.js";
const h = NetnsHarness.create();
const n = h.addNode();
spawn("ip", ["netns", "exec", n.name, "sleep", "600"], { stdio: "ignore" });
const iface = h.interfaceName();
mkdirSync("/var/run/wireguard", { recursive: true });
writeFileSync("/var/run/wireguard/" + iface + ".sock", "");
setTimeout(() => {
  process.stdout.write(JSON.stringify({ namespaces: [h.bridgeNs, n.name], iface }) + "\\n");
  if (process.argv[2] === "exit") process.exit(3);
}, 200);
setInterval(() => {}, 1000);
`;

function namespaces(): string[] {
  return spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
}

describe.skipIf(reason !== undefined)(`netns harness teardown${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let dir: string;

  beforeAll(() => {
    // Transpile the harness and what it imports so a plain node child can run it.
    dir = mkdtempSync(join(tmpdir(), "am-netns-driver-"));
    for (const file of ["test/helpers/netns.ts", "src/localmesh/netns.ts", "src/localmesh/cleanup.ts", "src/localmesh/requirements.ts", "src/wireguard/exec.ts", "src/wireguard/errors.ts", "src/shared/run.ts"]) {
      const out = ts.transpileModule(readFileSync(join(repo, file), "utf8"), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file.replace(/\.ts$/, ".js")), out.outputText);
    }
    writeFileSync(join(dir, "package.json"), '{"type":"module"}');
    writeFileSync(join(dir, "driver.js"), driver);
    symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function runDriver(mode: "signal" | "exit" | "sigkill"): Promise<{ namespaces: string[]; iface: string; signal: string | null; code: number | null }> {
    const child = spawn(process.execPath, [join(dir, "driver.js"), mode], { cwd: dir, stdio: ["ignore", "pipe", "inherit"] });
    const info = await new Promise<{ namespaces: string[]; iface: string }>((resolve, reject) => {
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        if (buf.includes("\n")) resolve(JSON.parse(buf.split("\n")[0]));
      });
      child.on("exit", (code) => reject(new Error(`driver exited early (${code})`)));
    });
    const exited = new Promise<{ signal: string | null; code: number | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    if (mode === "signal") child.kill("SIGTERM");
    if (mode === "sigkill") child.kill("SIGKILL");
    return { ...info, ...(await exited) };
  }

  it("SIGTERM: removes namespaces, processes and sockets, then dies of the signal", async () => {
    const r = await runDriver("signal");
    expect(r.signal).toBe("SIGTERM");
    expect(namespaces().filter((n) => r.namespaces.includes(n))).toEqual([]);
    expect(existsSync(`/var/run/wireguard/${r.iface}.sock`)).toBe(false);
  });

  it("process.exit: the exit hook tears down", async () => {
    const r = await runDriver("exit");
    expect(r.code).toBe(3);
    expect(namespaces().filter((n) => r.namespaces.includes(n))).toEqual([]);
    expect(existsSync(`/var/run/wireguard/${r.iface}.sock`)).toBe(false);
  });

  it("SIGKILL: the next harness sweeps what the dead process left", async () => {
    const r = await runDriver("sigkill");
    expect(namespaces().filter((n) => r.namespaces.includes(n)).sort()).toEqual([...r.namespaces].sort());
    const next = NetnsHarness.create();
    try {
      expect(namespaces().filter((n) => r.namespaces.includes(n))).toEqual([]);
    } finally {
      next.destroy();
      rmSync(`/var/run/wireguard/${r.iface}.sock`, { force: true });
    }
    expect(namespaces()).not.toContain(next.bridgeNs);
  });
});
