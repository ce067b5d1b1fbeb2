import { readFileSync } from "node:fs";
import { open, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { FailedPreconditionError } from "../core/errors.js";

/** stateLockFile is the name of the lock file in the state dir: the pid of the meshd that owns it. */
export const stateLockFile = "meshd.pid";

/** isMeshd says whether process `pid` runs and is a meshd (its command line names bin/meshd.js or meshd). */
function isMeshd(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((a) => /(^|\/)meshd(\.js)?$/.test(a));
  } catch {
    return false;
  }
}

/**
 * lockStateDir makes this process the one meshd of `stateDir` and returns the unlock function. A
 * second meshd on the same state dir would fight the first over its WireGuard device (stopping its
 * wireguard-go as an orphan), its TPM (flushing its attestation key) and its store; it is refused,
 * naming the running one. A lock left by a meshd that died (SIGKILL, OOM, power loss) is taken
 * over: crash-only, restarting is the normal path. The lock file is created exclusively, so of two
 * meshd starting at once only one wins.
 */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const file = join(stateDir, stateLockFile);
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(file, "wx", 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      return async () => {
        if ((await readFile(file, "utf8").catch(() => "")).trim() === String(process.pid)) await unlink(file).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
    }
    const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isMeshd(pid)) {
      throw new FailedPreconditionError(
        `another meshd (pid ${pid}) runs on the state dir ${stateDir}: stop it first (two would fight over the WireGuard device, the TPM and the store)`,
      );
    }
    await unlink(file).catch(() => {}); // left by a meshd that is gone: take over
  }
}
