// meshd's state-dir lock (issue 14): one meshd per state dir; a lock a dead meshd left is taken over.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { lockStateDir, stateLockFile } from "../../src/cmd/state-lock.js";

describe("lockStateDir", () => {
  const dirs: string[] = [];
  const killers: Array<() => void> = [];
  afterEach(async () => {
    for (const k of killers.splice(0)) k();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const dir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), "am-lock-"));
    dirs.push(d);
    return d;
  };

  it("writes this pid and removes the file on unlock", async () => {
    const d = await dir();
    const unlock = await lockStateDir(d);
    expect((await readFile(join(d, stateLockFile), "utf8")).trim()).toBe(String(process.pid));
    await unlock();
    await expect(readFile(join(d, stateLockFile), "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("refuses while another meshd runs on the state dir, naming its pid", async () => {
    const d = await dir();
    // A process whose command line is a meshd's (bash's exec -a renames argv[0]).
    const other = spawn("bash", ["--norc", "-c", "exec -a /opt/attested-mesh/bin/meshd.js sleep 30"], { stdio: "ignore" });
    killers.push(() => other.kill("SIGKILL"));
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(join(d, stateLockFile), `${other.pid}\n`);
    await expect(lockStateDir(d)).rejects.toThrow(new RegExp(`another meshd \\(pid ${other.pid}\\) runs on the state dir`));
  });

  it("takes over a lock left by a meshd that died, or by a pid that is no meshd", async () => {
    const d = await dir();
    const gone = spawn("true");
    await new Promise((r) => gone.once("exit", r));
    await writeFile(join(d, stateLockFile), `${gone.pid}\n`);
    await (await lockStateDir(d))();
    await writeFile(join(d, stateLockFile), "1\n"); // init: alive, but no meshd
    const unlock = await lockStateDir(d);
    expect((await readFile(join(d, stateLockFile), "utf8")).trim()).toBe(String(process.pid));
    await unlock();
  });
});
