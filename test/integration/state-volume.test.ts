/**
 * StateVolume on real LUKS2 files with real cryptsetup and blkid — only the parts that need no
 * device-mapper (this host has none): the locked state, the refusal to format over data, uuid and
 * the key rotation. Opening, mkfs and mounting run in the VM tier.
 */
import { randomBytes } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { DeviceNotBlankError, LUKSVersionError } from "../../src/diskencryption/errors.js";
import { StateVolume } from "../../src/diskencryption/state-volume.js";
import { createLUKSFile, createPlainFile, cryptsetupUUID, fastPBKDF, haveCryptsetup, opensWithKeyFile, trackTempDirs, caughtDiskError } from "../helpers/luks.js";

const track = trackTempDirs();

/** A mapping name no one else uses, so a host that does have device-mapper is not disturbed. */
const mappingName = `amtest-${randomBytes(4).toString("hex")}`;

const caught = caughtDiskError;

describe.skipIf(!haveCryptsetup())("StateVolume on LUKS2 files (real cryptsetup, no device-mapper)", () => {
  it("a LUKS2 disk without the initial key file is locked: nothing mapped, nothing mounted; uuid matches luksUUID", async () => {
    const f = await track(createLUKSFile());
    const mountPoint = join(f.dir, "mnt");
    const { volume, state } = await StateVolume.prepare({ device: f.path, mappingName, mountPoint, initialKeyFile: join(f.dir, "gone.key"), pbkdf: fastPBKDF });
    expect(state).toBe("locked");
    await expect(stat(mountPoint)).rejects.toThrow();
    expect(await volume.uuid()).toBe((await cryptsetupUUID(f.path)).toLowerCase());
  });

  it("updatePassphrase rotates to the new key and removes the initial key file", async () => {
    const f = await track(createLUKSFile());
    const volume = new StateVolume({ device: f.path, mappingName, mountPoint: join(f.dir, "mnt"), initialKeyFile: f.initialKeyFile, pbkdf: fastPBKDF });
    const newKey = randomBytes(32);
    await volume.updatePassphrase(newKey);
    expect(await opensWithKeyFile(f.path, newKey)).toBe(true);
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(false);
    await expect(stat(f.initialKeyFile)).rejects.toThrow();
    await volume.updatePassphrase(newKey); // idempotent without the file
    // after a reboot the file is gone: locked
    expect((await StateVolume.prepare({ device: f.path, mappingName, mountPoint: join(f.dir, "mnt"), initialKeyFile: f.initialKeyFile })).state).toBe("locked");
  });

  it("a disk holding ext4 is refused (real blkid) and left byte-for-byte unchanged; no key file is written", async () => {
    const plain = await track(createPlainFile(8));
    await execa("mkfs.ext4", ["-q", plain.path], { stdin: "ignore" });
    const before = await readFile(plain.path);
    const keyFile = join(plain.dir, "run", "state.key");
    const err = await caught(StateVolume.prepare({ device: plain.path, mappingName, mountPoint: join(plain.dir, "mnt"), initialKeyFile: keyFile }));
    expect(err).toBeInstanceOf(DeviceNotBlankError);
    expect(err.message).toMatch(/TYPE=ext4/);
    expect((await readFile(plain.path)).equals(before)).toBe(true);
    await expect(stat(keyFile)).rejects.toThrow();
  });

  it("random bytes blkid cannot name are refused by the zero check", async () => {
    const plain = await track(createPlainFile(8));
    await writeFile(plain.path, randomBytes(64 * 1024), { flag: "r+" });
    const err = await caught(StateVolume.prepare({ device: plain.path, mappingName, mountPoint: join(plain.dir, "mnt"), initialKeyFile: join(plain.dir, "k") }));
    expect(err).toBeInstanceOf(DeviceNotBlankError);
    expect(err.message).toMatch(/non-zero byte at offset 0/);
  });

  it("a LUKS1 disk is refused with LUKSVersionError", async () => {
    const f = await track(createLUKSFile({ type: "luks1" }));
    expect(await caught(StateVolume.prepare({ device: f.path, mappingName, mountPoint: join(f.dir, "mnt"), initialKeyFile: f.initialKeyFile }))).toBeInstanceOf(LUKSVersionError);
  });
});
