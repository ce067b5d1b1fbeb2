// Crash points (issue 14): inert without AM_CRASH_AT; with it, SIGKILL at exactly that point; an
// unknown name is refused before meshd starts.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { crashPoint, crashPoints } from "../../src/shared/crash.js";

const repo = join(import.meta.dirname, "..", "..");
// The built module (the setup builds before tests), as meshd loads it.
const run = (script: string, env: Record<string, string>) =>
  spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: repo, env: { ...process.env, ...env }, encoding: "utf8", timeout: 30_000 });
const crashModule = JSON.stringify(pathToFileURL(join(repo, "dist", "src", "shared", "crash.js")).href);

describe("crash points", () => {
  it("do nothing without AM_CRASH_AT (this process reaches every one and lives)", () => {
    for (const p of crashPoints) crashPoint(p);
    expect(crashPoints.length).toBeGreaterThanOrEqual(9);
  });

  it("every crash point is exercised by an e2e crash driver, and every one is placed in the code (a point no driver kills at proves nothing)", () => {
    const drivers = ["crash.test.ts", "crash-first-coordinator.test.ts", "crash-add-coordinator.test.ts"].map((f) => readFileSync(join(repo, "test", "e2e", f), "utf8")).join("\n");
    const src = execFileSync("grep", ["-rhoE", String.raw`crashPoint\("[a-z:-]+"\)`, join(repo, "src")], { encoding: "utf8" });
    for (const p of crashPoints) {
      expect(drivers, `a driver kills meshd at ${p}`).toContain(`"${p}"`);
      expect(src, `${p} is placed in src/`).toContain(`crashPoint("${p}")`);
    }
  });

  it("with AM_CRASH_AT, the process dies by SIGKILL at that point and not before, saying so on stderr", () => {
    const r = run(`import { crashPoint } from ${crashModule}; crashPoint("node-activation:after-mark"); process.stdout.write("before\\n"); crashPoint("node-activation:after-disk-key"); process.stdout.write("after\\n");`, {
      AM_CRASH_AT: "node-activation:after-disk-key",
    });
    expect(r.signal).toBe("SIGKILL");
    expect(r.stdout).toBe("before\n");
    expect(r.stderr).toContain("crash point node-activation:after-disk-key reached (AM_CRASH_AT): SIGKILL");
  });

  it("meshd refuses an AM_CRASH_AT that names no crash point, listing the known ones", () => {
    const r = spawnSync(process.execPath, [join(repo, "bin", "meshd.js"), "--public-ip", "192.0.2.1"], { env: { ...process.env, AM_CRASH_AT: "nowhere" }, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/AM_CRASH_AT="nowhere" names no crash point; known: first-coordinator:after-store-member, .*node-activation:after-node-state/);
  });
});
