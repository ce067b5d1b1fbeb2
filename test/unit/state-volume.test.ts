/**
 * StateVolume.prepare()/unlock()/lock() with an injected runner answering cryptsetup, blkid, mkfs.ext4,
 * mount, umount and findmnt from a model of the disk, mapping and mount table (this host has no
 * device-mapper). Device and key file are real temp files: the blank check and file modes are real.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Exec, ExecResult } from "../../src/diskencryption/cryptsetup.js";
import { DeviceNotBlankError, DiskError, LUKSVersionError, VolumeCommandError, WrongKeyError } from "../../src/diskencryption/errors.js";
import { StateVolume, type PrepareState, type StateVolumeOptions } from "../../src/diskencryption/state-volume.js";
import { keyForms, makeTempDir, type TempDir } from "../helpers/luks.js";

/** FakeMachine models one disk, one mapping and one mount table; `exec` is the injected runner. */
class FakeMachine {
  luks: "none" | "luks1" | "luks2" = "none";
  blkidSays: string | undefined; // what `blkid -p` reports for the backing device when it is not LUKS
  keys = new Set<string>();
  mapping: { device: string } | undefined;
  fs: "ext4" | undefined;
  mounted: { source: string; at: string } | undefined;
  deviceMapper = true;
  mapperNodeAppears = true;
  mountFails = false;
  calls: { cmd: string; stdin?: Buffer }[] = [];
  inFlight = 0;
  maxInFlight = 0;

  // prettier-ignore
  constructor(readonly device: string, readonly mapperPath: string) {}
  get commands(): string[] {
    return this.calls.map((c) => c.cmd);
  }

  exec: Exec = async (file, args, { input }) => {
    const stdin = input ? Buffer.from(input) : undefined;
    this.calls.push({ cmd: `${file} ${args.join(" ")}`, ...(stdin ? { stdin } : {}) });
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      await new Promise((r) => setImmediate(r));
      return await this.answer(file, [...args], stdin);
    } finally {
      this.inFlight--;
    }
  };

  private async answer(file: string, a: string[], stdin: Buffer | undefined): Promise<ExecResult> {
    const ok = (stdout = ""): ExecResult => ({ exitCode: 0, stdout, stderr: "" });
    const fail = (exitCode: number, stderr = ""): ExecResult => ({ exitCode, stdout: "", stderr });
    const keyFile = a[a.indexOf("--key-file") + 1];
    const key = async (): Promise<string> => (keyFile === "-" ? stdin! : await readFile(keyFile)).toString("hex");
    if (file === "umount") {
      this.mounted = undefined;
      return ok();
    }
    switch (`${file} ${a[0]}`) {
      case "cryptsetup isLuks":
        return (a[1] === "--type" ? this.luks === "luks2" : this.luks !== "none") ? ok() : fail(1);
      case "cryptsetup status":
        if (!this.deviceMapper) return fail(1, "Cannot initialize device-mapper. Is dm_mod kernel module loaded?");
        return this.mapping ? ok(`/dev/mapper/state is active.\n  type:    LUKS2\n  device:  ${this.mapping.device}\n`) : fail(4, "/dev/mapper/state is inactive.");
      case "cryptsetup luksFormat":
        await luksWithKey(this, stdin!);
        return ok();
      case "cryptsetup open":
        if (!this.keys.has(await key())) return fail(2, "No key available with this passphrase.");
        if (a[1] === "--test-passphrase") return ok("Key slot 0 unlocked.\nCommand successful.");
        this.mapping = { device: a.at(-2)! };
        if (this.mapperNodeAppears) await writeFile(this.mapperPath, "");
        return ok();
      case "cryptsetup close":
        this.mapping = undefined;
        await rm(this.mapperPath, { force: true });
        return ok();
      case "blkid -p":
        if (a.at(-1) === this.mapperPath) return this.fs ? ok(this.fs) : fail(2);
        return this.blkidSays ? ok(`DEVNAME=${a.at(-1)}\n${this.blkidSays}`) : fail(2);
      case "mkfs.ext4 -q":
        this.fs = "ext4";
        return ok();
      case "mount -t":
        if (this.mountFails) return fail(32, "mount: wrong fs type, bad option, bad superblock");
        this.mounted = { source: a.at(-2)!, at: a.at(-1)! };
        return ok();
      case "findmnt --noheadings":
        return this.mounted && this.mounted.at === a.at(-1) ? ok(this.mounted.source) : fail(1);
    }
    return fail(99, `unexpected ${file} ${a.join(" ")}`);
  }
}

/** luksWithKey turns the fake disk into a LUKS2 disk that `key` opens (header bytes included). */
async function luksWithKey(machine: FakeMachine, key: Buffer): Promise<void> {
  machine.luks = "luks2";
  machine.keys.add(key.toString("hex"));
  await writeFile(machine.device, "LUKS\xba\xbe", { flag: "r+" });
}

let tmp: TempDir;
let m: FakeMachine;
let opts: StateVolumeOptions;
beforeEach(async () => {
  tmp = await makeTempDir("am-statevol-");
  const device = join(tmp.dir, "vda.img");
  await writeFile(device, Buffer.alloc(2 * 1024 * 1024));
  m = new FakeMachine(device, join(tmp.dir, "state"));
  opts = { device, mountPoint: join(tmp.dir, "var/lib/meshd"), initialKeyFile: join(tmp.dir, "run/keys/state.key"), runner: m.exec, mapperDir: tmp.dir, mapperTimeoutMs: 300 };
});
afterEach(async () => tmp.cleanup());

/** writeKeyFile puts `key` where the initial key file goes (as the image would). */
async function writeKeyFile(key: Buffer): Promise<void> {
  await mkdir(join(tmp.dir, "run/keys"), { recursive: true, mode: 0o700 });
  await writeFile(opts.initialKeyFile, key, { mode: 0o600 });
}

async function rejection(p: Promise<unknown>): Promise<DiskError> {
  const err = await p.then(() => undefined, (e: unknown) => e); // prettier-ignore
  expect(err).toBeInstanceOf(DiskError);
  return err as DiskError;
}

function expectNoKeyInArgs(key: Uint8Array): void {
  for (const c of m.calls) for (const form of keyForms(key)) expect(c.cmd).not.toContain(form);
}

function noWrites(cmds: string[]): void {
  for (const c of cmds) expect(c).not.toMatch(/^(cryptsetup luksFormat|mkfs\.ext4|mount )/);
}

describe("StateVolume.prepare decides by what is on the disk", () => {
  it("blank disk: writes a 0600 random key, formats LUKS2 with it on stdin, opens, makes ext4, mounts → formatted; again → opened", async () => {
    const { volume, state } = await StateVolume.prepare({ ...opts, pbkdf: { type: "pbkdf2", iterations: 1000 } });
    expect(state).toBe("formatted");
    const key = await readFile(opts.initialKeyFile);
    expect(key.length).toBe(32);
    const modes = await Promise.all([opts.initialKeyFile, join(tmp.dir, "run/keys"), volume.mountPoint].map(async (f) => (await stat(f)).mode & 0o777));
    expect(modes).toEqual([0o600, 0o700, 0o700]);
    const dev = opts.device;
    expect(m.commands.filter((c) => !c.startsWith("findmnt"))).toEqual([
      `cryptsetup isLuks --type luks2 ${dev}`,
      `cryptsetup isLuks ${dev}`,
      `blkid -p -o export ${dev}`,
      `cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - ${dev}`,
      `cryptsetup open --type luks2 --key-file - ${dev} state`,
      `blkid -p -s TYPE -o value ${join(tmp.dir, "state")}`,
      `mkfs.ext4 -q ${join(tmp.dir, "state")}`,
      `mount -t ext4 -o nodev,nosuid,noexec ${join(tmp.dir, "state")} ${volume.mountPoint}`,
    ]);
    const withStdin = m.calls.filter((c) => c.stdin);
    expect(withStdin.map((c) => c.cmd.split(" ")[1])).toEqual(["luksFormat", "open"]);
    for (const c of withStdin) expect(c.stdin!.equals(key)).toBe(true);
    expectNoKeyInArgs(key);
    expect(m.mounted?.at).toBe(volume.mountPoint);
    m.calls = []; // idempotent: again → opened, nothing opened or written
    expect((await StateVolume.prepare(opts)).state).toBe("opened");
    noWrites(m.commands);
    expect(m.commands.some((c) => c.startsWith("cryptsetup open"))).toBe(false);
  });

  const upCases: { name: string; setup: (key: Buffer) => Promise<unknown>; state: PrepareState; mkfs: number; byKeyFile?: boolean }[] = [
    { name: "mapping active but not mounted, ext4 present", setup: async () => ((m.mapping = { device: opts.device }), (m.fs = "ext4"), writeFile(m.mapperPath, "")), state: "opened", mkfs: 0 },
    { name: "the initial key file opens it (meshd restarted before activation)", setup: async (key) => ((m.fs = "ext4"), writeKeyFile(key)), state: "opened", mkfs: 0, byKeyFile: true },
    { name: "the initial key opens it but it has no filesystem (first boot interrupted before mkfs)", setup: (key) => writeKeyFile(key), state: "formatted", mkfs: 1, byKeyFile: true },
  ];
  for (const tc of upCases) {
    it(`LUKS2, ${tc.name} → ${tc.state}, mounted`, async () => {
      const key = randomBytes(32);
      await luksWithKey(m, key);
      await tc.setup(key);
      expect((await StateVolume.prepare(opts)).state).toBe(tc.state);
      expect(m.mounted?.source).toBe(m.mapperPath);
      expect(m.commands.filter((c) => c.startsWith("mkfs"))).toHaveLength(tc.mkfs);
      if (tc.byKeyFile) expect(m.commands).toContain(`cryptsetup open --type luks2 --key-file ${opts.initialKeyFile} ${opts.device} state`);
      expectNoKeyInArgs(key);
    });
  }

  const lockedCases: { name: string; setup: () => Promise<void> }[] = [
    { name: "no initial key file (after a reboot)", setup: async () => {} },
    { name: "the initial key file no longer opens it (rotated)", setup: () => writeKeyFile(randomBytes(32)) },
    { name: "no device-mapper on this machine and no key file", setup: async () => void (m.deviceMapper = false) },
  ];
  for (const tc of lockedCases) {
    it(`LUKS2, ${tc.name} → locked, nothing mapped or mounted`, async () => {
      await luksWithKey(m, randomBytes(32));
      m.fs = "ext4";
      await tc.setup();
      expect((await StateVolume.prepare(opts)).state).toBe("locked");
      expect(m.mapping).toBeUndefined();
      expect(m.mounted).toBeUndefined();
      noWrites(m.commands);
    });
  }

  const foreign: { name: string; blkid?: string; bytes: string; message: RegExp }[] = [
    { name: "an ext4 filesystem (blkid names it)", blkid: "TYPE=ext4\nUSAGE=filesystem", bytes: "\x53\xef", message: /blkid: TYPE=ext4 USAGE=filesystem/ },
    { name: "a partition table", blkid: "PTTYPE=gpt", bytes: "EFI PART", message: /PTTYPE=gpt/ },
    { name: "data blkid does not recognize (random bytes)", bytes: "\x01\x02random", message: /non-zero byte at offset 4096/ },
  ];
  for (const tc of foreign) {
    it(`a disk holding ${tc.name} → DeviceNotBlankError; no format, no key file, disk untouched`, async () => {
      const fh = await open(m.device, "r+"); // at 4 KiB, so the message's offset is checkable
      await fh.write(Buffer.from(tc.bytes, "latin1"), 0, tc.bytes.length, 4096);
      await fh.close();
      m.blkidSays = tc.blkid;
      const before = await readFile(m.device);
      const err = await rejection(StateVolume.prepare(opts));
      expect(err).toBeInstanceOf(DeviceNotBlankError);
      expect(err.code).toBe("failed-precondition");
      expect(err.message).toMatch(tc.message);
      noWrites(m.commands);
      expect((await readFile(m.device)).equals(before)).toBe(true);
      await expect(stat(opts.initialKeyFile)).rejects.toThrow();
    });
  }

  const failures: { name: string; setup: () => Promise<unknown>; cls: new (...args: never[]) => DiskError; message: RegExp; blank?: true }[] = [
    { name: "a LUKS1 header", setup: async () => (m.luks = "luks1"), cls: LUKSVersionError, message: /LUKS1 header; only LUKS2/ },
    { name: "a mapping named state on another device", setup: () => luksWithKey(m, randomBytes(32)).then(() => (m.mapping = { device: "/dev/vdb" })), cls: DiskError, message: /open on \/dev\/vdb/ },
    { name: "mount failing after open", setup: async () => (m.mountFails = true), cls: VolumeCommandError, message: /mount .*exit 32: mount: wrong fs type/, blank: true },
    { name: "a mapping node that never appears", setup: async () => (m.mapperNodeAppears = false), cls: VolumeCommandError, message: /did not appear after cryptsetup open/, blank: true },
  ];
  for (const tc of failures) {
    it(`${tc.name} → error; nothing mounted, a mapping prepare opened is closed again, a non-blank disk is not written`, async () => {
      await tc.setup();
      const mappedBefore = m.mapping;
      const err = await rejection(StateVolume.prepare(opts));
      expect(err).toBeInstanceOf(tc.cls);
      expect(err.message).toMatch(tc.message);
      expect(m.mounted).toBeUndefined();
      expect(m.mapping).toBe(mappedBefore);
      if (!tc.blank) noWrites(m.commands);
    });
  }
});

describe("StateVolume.unlock and lock", () => {
  async function lockedVolume(key: Buffer): Promise<StateVolume> {
    await luksWithKey(m, key);
    m.fs = "ext4";
    const { volume, state } = await StateVolume.prepare(opts);
    expect(state).toBe("locked");
    m.calls = [];
    return volume;
  }

  it("a wrong key → WrongKeyError; nothing mapped, no mount issued, key not in the message", async () => {
    const volume = await lockedVolume(randomBytes(32));
    const wrong = randomBytes(32);
    const err = await rejection(volume.unlock(wrong));
    expect(err).toBeInstanceOf(WrongKeyError);
    for (const form of keyForms(wrong)) expect(err.message).not.toContain(form);
    expect(m.mapping).toBeUndefined();
    expect(m.commands.some((c) => c.startsWith("mount"))).toBe(false);
  });

  it("the right key opens (key on stdin only) and mounts; a second unlock re-checks the key and changes nothing", async () => {
    const key = randomBytes(32);
    const volume = await lockedVolume(key);
    await volume.unlock(key);
    expect(m.mounted?.at).toBe(volume.mountPoint);
    expect(m.calls.find((c) => c.cmd.startsWith("cryptsetup open"))?.stdin?.equals(key)).toBe(true);
    expectNoKeyInArgs(key);
    m.calls = [];
    await volume.unlock(key);
    expect(m.commands.some((c) => c.startsWith("mount"))).toBe(false);
    await expect(volume.unlock(randomBytes(32))).rejects.toBeInstanceOf(WrongKeyError);
  });

  it("never formats: a volume without ext4 opened by a delivered key → error, mapping closed", async () => {
    const key = randomBytes(32);
    const volume = await lockedVolume(key);
    m.fs = undefined;
    const err = await rejection(volume.unlock(key));
    expect(err.message).toMatch(/no filesystem, not ext4/);
    expect(m.commands.some((c) => c.startsWith("mkfs"))).toBe(false);
    expect(m.mapping).toBeUndefined();
  });

  it("lock unmounts and closes, idempotently, and prepare is then locked again; concurrent calls never overlap (mutex)", async () => {
    const key = randomBytes(32);
    const volume = await lockedVolume(key);
    await Promise.all([volume.unlock(key), volume.unlock(key), StateVolume.prepare(opts), volume.unlock(key)]);
    expect(m.maxInFlight).toBe(1);
    await volume.lock();
    expect(m.mounted).toBeUndefined();
    expect(m.mapping).toBeUndefined();
    await volume.lock();
    expect((await StateVolume.prepare(opts)).state).toBe("locked");
  });
});

it("StateVolume refuses a mapping as device, a bad mapping name and a missing mount point", () => {
  for (const bad of [{ device: "state" }, { device: "/dev/mapper/state" }, { mappingName: "a/b" }, { mountPoint: "" }]) {
    expect(() => new StateVolume({ ...opts, ...bad }), JSON.stringify(bad)).toThrow(TypeError);
  }
});
