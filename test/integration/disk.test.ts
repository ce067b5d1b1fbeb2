import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { errorMessage } from "../../src/core/errors.js";
import { stateDiskKey } from "../../src/core/keys.js";
import {
  AlreadyFormattedError,
  DeviceNotFoundError,
  KeyFileNotFoundError,
  LUKSVersionError,
  NoFreeKeyslotError,
  NotLUKSError,
  WrongKeyError,
} from "../../src/diskencryption/errors.js";
import { LUKSDisk } from "../../src/diskencryption/luks-disk.js";
import { createLUKSFile, createPlainFile, cryptsetupUUID, fastPBKDF, haveCryptsetup, keyForms, makeTempDir, opensWithKeyFile, writeWrapper, trackTempDirs, caughtDiskError } from "../helpers/luks.js";

const track = trackTempDirs();

const masterSecret = Buffer.from("0123456789abcdef0123456789abcdef", "utf8");
const clusterID = Buffer.alloc(32, 7);
/** A key with newline, NUL and printable bytes: stdin must carry it raw, like a key file. */
const awkwardKey = Buffer.from("line one\nline\0two\n\n\r\xff tail", "latin1");

function disk(device: string, initialKeyFile: string, extra: Partial<ConstructorParameters<typeof LUKSDisk>[0]> = {}): LUKSDisk {
  return new LUKSDisk({ device, initialKeyFile, pbkdf: fastPBKDF, ...extra });
}

const caught = caughtDiskError;

describe.skipIf(!haveCryptsetup())("LUKSDisk on LUKS2 files (real cryptsetup)", () => {
  it("uuid matches cryptsetup luksUUID, lower-case", async () => {
    const f = await track(createLUKSFile());
    const uuid = await disk(f.path, f.initialKeyFile).uuid();
    expect(uuid).toBe((await cryptsetupUUID(f.path)).toLowerCase());
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await disk(f.path, f.initialKeyFile).isLUKS2()).toBe(true);
  });

  it("updatePassphrase(stateDiskKey(…, uuid)) makes the derived key open the header and revokes the initial key", async () => {
    const f = await track(createLUKSFile());
    const d = disk(f.path, f.initialKeyFile);
    const derived = stateDiskKey(masterSecret, clusterID, await d.uuid());
    expect(await d.testPassphrase(derived)).toBe(false);

    await d.updatePassphrase(derived);

    expect(await opensWithKeyFile(f.path, derived)).toBe(true);
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(false);
    expect(await d.testPassphrase(derived)).toBe(true);
    expect(await d.testPassphrase(f.initialKey)).toBe(false);
    expect((await d.unlockWith(derived)).keyslot).toBeGreaterThanOrEqual(0);
    expect(await d.keyslots()).toHaveLength(1);
    expect(await d.uuid()).toBe(await cryptsetupUUID(f.path)); // the UUID (and so the key ID) survives
  });

  it("a key with newline and NUL bytes goes through stdin exactly as a key file's whole content", async () => {
    const f = await track(createLUKSFile());
    await disk(f.path, f.initialKeyFile).updatePassphrase(awkwardKey);
    expect(await opensWithKeyFile(f.path, awkwardKey)).toBe(true);
    expect(await opensWithKeyFile(f.path, awkwardKey.subarray(0, 8))).toBe(false);
  });

  it("updatePassphrase is idempotent: again, and with the initial key file gone", async () => {
    const f = await track(createLUKSFile());
    const d = disk(f.path, f.initialKeyFile);
    const key = stateDiskKey(masterSecret, clusterID, await d.uuid());
    await d.updatePassphrase(key);
    await d.updatePassphrase(key);
    await rm(f.initialKeyFile);
    await d.updatePassphrase(key);
    expect(await opensWithKeyFile(f.path, key)).toBe(true);
    expect(await d.keyslots()).toHaveLength(1);
  });

  it("a wrong initial key gives WrongKeyError naming device and key file; the real initial key still opens", async () => {
    const f = await track(createLUKSFile());
    const wrongFile = join(f.dir, "wrong.key");
    const wrongKey = Buffer.from("not-the-initial-key-0123456789ab");
    await writeFile(wrongFile, wrongKey, { mode: 0o600 });
    const newKey = Buffer.from("the-new-key-0123456789abcdefghij");
    const err = await caught(disk(f.path, wrongFile).updatePassphrase(newKey));
    expect(err).toBeInstanceOf(WrongKeyError);
    expect(err.message).toContain(f.path);
    expect(err.message).toContain(wrongFile);
    expect(err.retryable).toBe(false);
    for (const form of [...keyForms(wrongKey), ...keyForms(newKey), ...keyForms(f.initialKey)]) {
      expect(errorMessage(err)).not.toContain(form);
    }
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(true);
    expect(await opensWithKeyFile(f.path, newKey)).toBe(false);
  });

  it("a missing initial key file gives KeyFileNotFoundError", async () => {
    const f = await track(createLUKSFile());
    const err = await caught(disk(f.path, join(f.dir, "absent.key")).updatePassphrase(Buffer.alloc(32, 1)));
    expect(err).toBeInstanceOf(KeyFileNotFoundError);
    expect(err.message).toContain("absent.key");
  });

  it("unlockWith a wrong key throws WrongKeyError without the key in the message", async () => {
    const f = await track(createLUKSFile());
    const wrong = Buffer.from("wrong-key-wrong-key-wrong-key-12");
    const err = await caught(disk(f.path, f.initialKeyFile).unlockWith(wrong));
    expect(err).toBeInstanceOf(WrongKeyError);
    for (const form of keyForms(wrong)) expect(errorMessage(err)).not.toContain(form);
  });

  it("a LUKS1 header gives LUKSVersionError everywhere; isLUKS2 is false", async () => {
    const f = await track(createLUKSFile({ type: "luks1", sizeMiB: 8 }));
    const d = disk(f.path, f.initialKeyFile);
    expect(await d.isLUKS2()).toBe(false);
    for (const p of [d.uuid(), d.updatePassphrase(Buffer.alloc(32, 1)), d.checkLUKS2(), d.testPassphrase(f.initialKey)]) {
      const err = await caught(p);
      expect(err).toBeInstanceOf(LUKSVersionError);
      expect(err.message).toMatch(/LUKS1/);
      expect(err.message).toContain(f.path);
    }
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(true);
  });

  it("a file without a LUKS header gives NotLUKSError; a missing file DeviceNotFoundError", async () => {
    const p = await track(createPlainFile());
    const plain = disk(p.path, join(p.dir, "k"));
    expect(await plain.isLUKS2()).toBe(false);
    const e1 = await caught(plain.uuid());
    expect(e1).toBeInstanceOf(NotLUKSError);
    expect(e1.message).toContain(p.path);

    const missing = disk(join(p.dir, "nope.img"), join(p.dir, "k"));
    for (const call of [missing.uuid(), missing.isLUKS2(), missing.updatePassphrase(Buffer.alloc(32, 1))]) {
      const e2 = await caught(call);
      expect(e2).toBeInstanceOf(DeviceNotFoundError);
      expect(e2.message).toContain("nope.img");
      expect(e2.code).toBe("not-found");
    }
  });

  it("a header without room for a second keyslot gives NoFreeKeyslotError and changes nothing (no in-place overwrite)", async () => {
    const f = await track(createLUKSFile({ keyslotsSize: "256k" }));
    const newKey = Buffer.alloc(32, 9);
    const err = await caught(disk(f.path, f.initialKeyFile).updatePassphrase(newKey));
    expect(err).toBeInstanceOf(NoFreeKeyslotError);
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(true);
    expect(await opensWithKeyFile(f.path, newKey)).toBe(false);
  });

  it("format writes a LUKS2 header opened by the key, and refuses to overwrite one", async () => {
    const p = await track(createPlainFile(32));
    const key = Buffer.from("format-key-0123456789abcdefghijk");
    const d = disk(p.path, join(p.dir, "unused"));
    await d.format(key);
    expect(await d.isLUKS2()).toBe(true);
    expect(await opensWithKeyFile(p.path, key)).toBe(true);
    const uuid = await d.uuid();
    expect(await caught(d.format(key))).toBeInstanceOf(AlreadyFormattedError);
    await d.format(Buffer.alloc(32, 3), { allowOverwrite: true });
    expect(await d.uuid()).not.toBe(uuid);
  });

  it("5 parallel calls on one process are serialized: no failure, no overlapping cryptsetup runs", async () => {
    const f = await track(createLUKSFile());
    const log = join(f.dir, "runs.log");
    const wrapper = await writeWrapper(f.dir, log);
    const key = Buffer.from("parallel-key-0123456789abcdefghi");
    const disks = Array.from({ length: 5 }, () => disk(f.path, f.initialKeyFile, { cryptsetupPath: wrapper }));
    const results = await Promise.allSettled([
      disks[0].updatePassphrase(key),
      disks[1].uuid(),
      disks[2].updatePassphrase(key),
      disks[3].testPassphrase(key),
      disks[4].updatePassphrase(key),
    ]);
    expect(results.map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));
    expect(await opensWithKeyFile(f.path, key)).toBe(true);
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(false);
    const lines = (await readFile(log, "utf8")).trim().split("\n");
    let running = 0;
    for (const line of lines) {
      running += line.startsWith("start ") ? 1 : -1;
      expect(running === 0 || running === 1).toBe(true);
    }
    expect(lines.length).toBeGreaterThan(10);
  });

  it("keys never reach a command line or a file: argv is key-free, keys come on a socket/pipe stdin, no temp files remain", async () => {
    const f = await track(createLUKSFile());
    const logDir = await track(makeTempDir());
    const log = join(logDir.dir, "runs.log");
    const wrapper = await writeWrapper(logDir.dir, log);
    const tmpBefore = new Set(await readdir(tmpdir()));
    const dirBefore = (await readdir(f.dir)).sort();
    const key = Buffer.from("argv-check-key-0123456789abcdefg");
    const d = disk(f.path, f.initialKeyFile, { cryptsetupPath: wrapper });
    // success, then failures with keys in play
    await d.updatePassphrase(key);
    await caught(d.unlockWith(Buffer.from("some-wrong-key-0123456789abcdefg")));
    await caught(disk(f.path, join(f.dir, "initial.key"), { cryptsetupPath: wrapper }).updatePassphrase(Buffer.from("yet-another-key-0123456789abcdef")));

    const text = await readFile(log, "utf8");
    for (const k of [key, f.initialKey, Buffer.from("some-wrong-key-0123456789abcdefg"), Buffer.from("yet-another-key-0123456789abcdef")]) {
      for (const form of keyForms(k)) expect(text).not.toContain(form);
    }
    const keyRuns = text.split("\n").filter((l) => / --key-file - |luksAddKey.* -$/.test(l));
    expect(keyRuns.length).toBeGreaterThan(0);
    for (const l of keyRuns) expect(l).toMatch(/fd0=(socket|pipe):\[/);
    expect((await readdir(f.dir)).sort()).toEqual([...dirBefore]);
    const newInTmp = (await readdir(tmpdir())).filter((n) => !tmpBefore.has(n) && !n.startsWith("am-disk-"));
    expect(newInTmp.filter((n) => /key|luks|crypt|mesh/i.test(n))).toEqual([]);
  });
});

describe("LUKSDisk without cryptsetup work", () => {
  it("a temp dir made by the helper is gone after cleanup", async () => {
    const t = await makeTempDir();
    await t.cleanup();
    await expect(readdir(t.dir)).rejects.toThrow(/ENOENT/);
  });
});
