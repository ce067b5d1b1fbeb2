/**
 * Interrupted rotation. strace's fault injection SIGKILLs cryptsetup just before its Nth write(2)
 * syscall, for every N until the step completes, so every point between two writes is covered.
 * Proven here: at every such point the initial or the new key (or both) opens the header, and calling
 * updatePassphrase again converges to "new key only". A kill inside luksKillSlot between its area
 * wipe and its header commit leaves a dead keyslot entry that no key opens (counted, allowed).
 * What this cannot cover: a power cut that reorders or tears writes inside the device (the kill
 * lands between syscalls, and page-cache writes of a file are not lost by a SIGKILL).
 */
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { LUKSDisk } from "../../src/diskencryption/luks-disk.js";
import {
  createLUKSFile,
  fastPBKDF,
  haveCryptsetup,
  haveStrace,
  makeTempDir,
  opensWithKeyFile,
  writeWrapper,
  type LUKSFile,
  type TempDir,
} from "../helpers/luks.js";

const newKey = Buffer.from("rotation-target-key-0123456789ab");
const maxWrites = 40;

/** killAt returns a shell line running cryptsetup, under strace killing it before write number `n` when argv[1] is `op`. */
function killAt(op: string, n: number): string {
  return `if [ "$1" = "${op}" ]; then strace -qq -o /dev/null -e trace=write -e inject=write:signal=KILL:when=${n} cryptsetup "$@"; else cryptsetup "$@"; fi`;
}

describe.skipIf(!haveCryptsetup() || !haveStrace())("interrupted rotation (cryptsetup SIGKILLed before each write)", () => {
  let base: LUKSFile;
  let work: TempDir;
  beforeAll(async () => {
    base = await createLUKSFile();
    work = await makeTempDir();
  });
  afterAll(async () => {
    await base?.cleanup();
    await work?.cleanup();
  });

  for (const op of ["luksAddKey", "luksKillSlot"]) {
    it(`killed inside ${op} at every write: the initial or the new key still opens, and a retry completes the rotation`, async () => {
      const seen = new Set<string>();
      const deadEntries: number[] = [];
      let completed = false;
      for (let n = 1; n <= maxWrites && !completed; n++) {
        const img = join(work.dir, `${op}-${n}.img`);
        await copyFile(base.path, img);
        const wrapper = await writeWrapper(work.dir, join(work.dir, `${op}-${n}.log`), killAt(op, n), `cs-${op}-${n}`);
        const interrupted = new LUKSDisk({ device: img, initialKeyFile: base.initialKeyFile, pbkdf: fastPBKDF, cryptsetupPath: wrapper });
        completed = await interrupted.updatePassphrase(newKey).then(
          () => true,
          () => false,
        );
        const oldOpens = await opensWithKeyFile(img, base.initialKey);
        const newOpens = await opensWithKeyFile(img, newKey);
        seen.add(`${oldOpens ? "old" : ""}${newOpens ? "new" : ""}`);
        expect(oldOpens || newOpens, `${op} killed before write ${n}: neither key opens`).toBe(true);

        // Retry without faults (e.g. after a reboot): converges to "new key only".
        const retry = new LUKSDisk({ device: img, initialKeyFile: base.initialKeyFile, pbkdf: fastPBKDF });
        await retry.updatePassphrase(newKey);
        expect(await opensWithKeyFile(img, newKey)).toBe(true);
        expect(await opensWithKeyFile(img, base.initialKey)).toBe(false);
        // luksKillSlot wipes the keyslot area before it commits the header: a kill between the two
        // leaves a dead entry (wiped material, no key opens it). Count those; they are harmless.
        const slots = await retry.keyslots();
        if (slots.length > 1) deadEntries.push(n);
        expect(slots.length).toBeLessThanOrEqual(2);
      }
      if (op === "luksAddKey") expect(deadEntries).toEqual([]);
      expect(completed, `${op} never completed within ${maxWrites} writes`).toBe(true);
      // Both the "before" and an "after" state were hit, so the sweep crossed the commit point.
      expect(seen.size).toBeGreaterThan(1);
    }, 120_000);
  }

  it("why not luksChangeKey: without a free keyslot area it overwrites in place, and a kill can lose both keys", async () => {
    const tight = await createLUKSFile({ keyslotsSize: "256k" });
    try {
      let lostBoth = 0;
      for (let n = 1; n <= maxWrites; n++) {
        const img = join(tight.dir, `c-${n}.img`);
        await copyFile(tight.path, img);
        const args = ["luksChangeKey", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", tight.initialKeyFile, img, "-"];
        const r = await execa("strace", ["-qq", "-o", "/dev/null", "-e", "trace=write", "-e", `inject=write:signal=KILL:when=${n}`, "cryptsetup", ...args], {
          input: newKey,
          reject: false,
        });
        if (!(await opensWithKeyFile(img, tight.initialKey)) && !(await opensWithKeyFile(img, newKey))) lostBoth++;
        if (r.exitCode === 0) break;
      }
      expect(lostBoth).toBeGreaterThan(0);
    } finally {
      await tight.cleanup();
    }
  }, 120_000);
});
