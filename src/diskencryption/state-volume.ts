/**
 * StateVolume: the peer's state disk as an encrypted ext4 filesystem mounted at the state dir, so
 * the WireGuard private key, the store and the node state live inside LUKS2. First boot formats a
 * blank disk with a random initial key (kept in a file on tmpfs); after a reboot the disk is locked
 * until the Coordinator's key arrives through {@link StateVolume.unlock}.
 *
 * Blank means: no LUKS header, nothing `blkid -p` recognizes, AND the first MiB all zeros. The
 * zero check is the authority: blkid finds nothing on random data (another tool's ciphertext, a
 * header whose magic was damaged), so it alone could let us format over data; blkid only makes the
 * refusal name what it found ("TYPE=ext4"). Keys only travel on cryptsetup's stdin or as the path
 * of the initial key file; they never appear in arguments, logs or errors.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, realpath, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { StateDisk } from "../core/disk.js";
import { nullLogger, type Logger } from "../shared/logger.js";
import { CryptsetupRunner, execaExec, parseStatus, pbkdfArgs, type Exec, type ExecResult, type PBKDFOptions } from "./cryptsetup.js";
import { CryptsetupError, DeviceNotBlankError, NotLUKSError, VolumeCommandError, WrongKeyError } from "./errors.js";
import { checkKey, fileExists, requireLUKS2, resolveDevice, unlockKeyslot, type KeySource } from "./header.js";
import { defaultCommandTimeoutMs, LUKSDisk } from "./luks-disk.js";
import { cryptsetupMutex } from "./mutex.js";

/** PrepareState says what {@link StateVolume.prepare} found: a new volume, a mounted one, or a locked one waiting for its key. */
export type PrepareState = "formatted" | "opened" | "locked";

/** StateVolumeOptions configure a {@link StateVolume}. */
export interface StateVolumeOptions {
  /** device is the backing block device or file path (/dev/vda); not a mapping name. */
  device: string;
  /** mappingName is the device-mapper name (default "state", so /dev/mapper/state). */
  mappingName?: string;
  /** mountPoint is where the filesystem is mounted (the state dir); created 0700 if missing. */
  mountPoint: string;
  /** initialKeyFile holds the key the disk was formatted with, as its whole content (on tmpfs, /run). */
  initialKeyFile: string;
  /** pbkdf applies to keyslots made here (format, rotation); undefined: cryptsetup's argon2id defaults. */
  pbkdf?: PBKDFOptions;
  /** logger gets one line per step; never keys. Default: silent. */
  logger?: Logger;
  /** runner runs every child (cryptsetup, blkid, mkfs.ext4, mount, umount, findmnt) except updatePassphrase's; default execa. */
  runner?: Exec;
  /** mapperDir is where mapping nodes appear (default /dev/mapper). */
  mapperDir?: string;
  /** mapperTimeoutMs bounds the wait for /dev/mapper/<name> after open (default 10 000). */
  mapperTimeoutMs?: number;
  /** commandTimeoutMs bounds each child (default 120 000; mkfs and argon2 take a while). */
  commandTimeoutMs?: number;
}

const blankCheckBytes = 1024 * 1024;

/**
 * StateVolume implements core's StateDisk for a LUKS2 disk that holds the state dir. Every method
 * holds the process-wide cryptsetup mutex for its whole run (updatePassphrase through LUKSDisk), so
 * calls are safe concurrently and never interleave. Nothing is held between calls: no close() is
 * needed; {@link lock} unmounts and closes the mapping when a test or shutdown wants that.
 */
export class StateVolume implements StateDisk {
  /** device, mappingName, mountPoint (absolute) and initialKeyFile are the options as resolved. */
  readonly device: string;
  readonly mappingName: string;
  readonly mountPoint: string;
  readonly initialKeyFile: string;
  readonly #o: StateVolumeOptions;
  readonly #exec: Exec;
  readonly #cs: CryptsetupRunner;
  readonly #log: Logger;
  readonly #luks: LUKSDisk;
  readonly #mapperPath: string;

  /** The constructor only checks options; {@link prepare} is the normal entry. */
  constructor(options: StateVolumeOptions) {
    const d = options?.device;
    if (typeof d !== "string" || !d.includes("/") || d.startsWith("/dev/mapper/")) {
      throw new TypeError("StateVolume: options.device must be the path of the backing device or file, not a mapping");
    }
    const name = options.mappingName ?? "state";
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new TypeError(`StateVolume: invalid mappingName ${JSON.stringify(name)}`);
    if (!options.mountPoint || !options.initialKeyFile) throw new TypeError("StateVolume: mountPoint and initialKeyFile are required");
    pbkdfArgs(options.pbkdf);
    this.#o = options;
    this.device = d;
    this.mappingName = name;
    this.mountPoint = resolve(options.mountPoint);
    this.initialKeyFile = options.initialKeyFile;
    this.#mapperPath = join(options.mapperDir ?? "/dev/mapper", name);
    this.#exec = options.runner ?? execaExec;
    this.#log = (options.logger ?? nullLogger).child("statevolume");
    const timeoutMs = options.commandTimeoutMs ?? defaultCommandTimeoutMs;
    this.#cs = new CryptsetupRunner({ path: "cryptsetup", timeoutMs, logger: this.#log, exec: this.#exec });
    this.#luks = new LUKSDisk({ device: d, initialKeyFile: this.initialKeyFile, logger: this.#log, commandTimeoutMs: timeoutMs, ...(options.pbkdf ? { pbkdf: options.pbkdf } : {}) });
  }

  /**
   * prepare brings the volume up as far as it can without the Coordinator: a blank disk is
   * formatted (random initial key written 0600 to initialKeyFile first, luksFormat, open, mkfs.ext4,
   * mount) → "formatted"; a LUKS2 disk already mapped and mounted, or one the initial key file opens,
   * ends up mounted → "opened"; any other LUKS2 disk → "locked" (nothing mapped; call unlock with
   * the Coordinator's key). LUKS1 throws LUKSVersionError; a non-blank, non-LUKS disk throws
   * DeviceNotBlankError and is never written.
   */
  static async prepare(options: StateVolumeOptions): Promise<{ volume: StateVolume; state: PrepareState }> {
    const volume = new StateVolume(options);
    return { volume, state: await cryptsetupMutex.run(() => volume.#prepare()) };
  }

  async #prepare(): Promise<PrepareState> {
    const op = "prepare state volume";
    const dev = await resolveDevice(this.#cs, this.device, op);
    try {
      await requireLUKS2(this.#cs, dev, op);
    } catch (err) {
      if (!(err instanceof NotLUKSError)) throw err;
      await this.#requireBlank(dev, op);
      const key = randomBytes(32);
      try {
        await mkdir(dirname(this.initialKeyFile), { recursive: true, mode: 0o700 });
        await rm(this.initialKeyFile, { force: true });
        await writeFile(this.initialKeyFile, key, { mode: 0o600, flag: "wx" }); // before the header: never a key-less LUKS disk
        await this.#cs.run(["luksFormat", "--type", "luks2", "--batch-mode", ...pbkdfArgs(this.#o.pbkdf), "--key-file", "-", dev], { op: `${op} (format)`, device: dev, key });
        this.#log.info("state disk formatted with a new initial key", { device: dev, keyFile: this.initialKeyFile });
        await this.#activate(dev, { key }, true, op);
      } finally {
        key.fill(0);
      }
      return "formatted";
    }
    if (await this.#mappingActive(dev, op)) {
      // mkfs only on a volume the initial key still opens: one that never held a peer's state.
      const initialKeyOpens = async (): Promise<boolean> =>
        (await fileExists(this.initialKeyFile, dev)) && (await unlockKeyslot(this.#cs, dev, op, { file: this.initialKeyFile })) !== undefined;
      const fresh = await this.#ensureMounted(dev, initialKeyOpens, op);
      return fresh ? "formatted" : "opened";
    }
    if (await fileExists(this.initialKeyFile, dev)) {
      const fresh = await this.#activate(dev, { file: this.initialKeyFile }, true, op);
      if (fresh !== undefined) return fresh ? "formatted" : "opened";
      this.#log.info("the initial key file no longer opens the state disk", { device: dev });
    }
    this.#log.info("state disk is locked: waiting for its key", { device: dev });
    return "locked";
  }

  /** uuid returns the backing device's LUKS UUID, lower-case (LUKSDisk.uuid; real cryptsetup). */
  uuid(): Promise<string> {
    return this.#luks.uuid();
  }

  /**
   * updatePassphrase rotates the initial key to `key` (LUKSDisk.updatePassphrase: luksAddKey, then
   * luksKillSlot; idempotent; runs real cryptsetup, not options.runner), then deletes the initial
   * key file: it opens nothing any more, but with a pre-rotation header copy it would yield the
   * volume key. The mounted filesystem is untouched.
   */
  async updatePassphrase(key: Uint8Array): Promise<void> {
    await this.#luks.updatePassphrase(key);
    await rm(this.initialKeyFile, { force: true });
    this.#log.info("initial key file removed after the key rotation", { keyFile: this.initialKeyFile });
  }

  /**
   * unlock opens the mapping with `key` (on cryptsetup's stdin) and mounts the filesystem. A wrong
   * key throws WrongKeyError with nothing mapped or mounted. Already open: it checks that `key`
   * opens the disk and makes sure the volume is mounted. It never formats: a volume without ext4
   * is an error (the mapping is closed again).
   */
  unlock(key: Uint8Array): Promise<void> {
    const op = "unlock state volume";
    return cryptsetupMutex.run(async () => {
      const dev = await resolveDevice(this.#cs, this.device, op);
      checkKey(key, "key", dev);
      await requireLUKS2(this.#cs, dev, op);
      if (await this.#mappingActive(dev, op)) {
        if ((await unlockKeyslot(this.#cs, dev, op, { key })) === undefined) throw new WrongKeyError(dev, `${op} ${dev}: the key opens no keyslot`);
        await this.#ensureMounted(dev, async () => false, op);
        return;
      }
      await this.#activate(dev, { key }, false, op);
      this.#log.info("state volume unlocked and mounted", { device: dev, mountPoint: this.mountPoint });
    });
  }

  /** lock unmounts the volume and closes the mapping; a no-op for parts already down. */
  lock(): Promise<void> {
    const op = "lock state volume";
    return cryptsetupMutex.run(async () => {
      if (this.#isOurs(await this.#mountedSource(op))) await this.#tool("umount", [this.mountPoint], op);
      const dev = await resolveDevice(this.#cs, this.device, op);
      if (await this.#mappingActive(dev, op)) await this.#cs.run(["close", this.mappingName], { op, device: dev });
    });
  }

  /** #requireBlank throws DeviceNotBlankError unless blkid finds nothing and the first MiB is zeros. */
  async #requireBlank(dev: string, op: string): Promise<void> {
    const probe = await this.#exec("blkid", ["-p", "-o", "export", dev], { timeoutMs: 30_000 });
    if (probe.exitCode === 0) {
      const found = probe.stdout.split("\n").filter((l) => /^(TYPE|PTTYPE|VERSION|USAGE)=/.test(l)).join(" ");
      throw new DeviceNotBlankError(dev, `${op} ${dev}: the disk is not LUKS2 and not blank (blkid: ${found || "a signature"}); refusing to format it`);
    }
    if (probe.exitCode !== 2) this.#log.warn("blkid could not probe the disk; relying on the zero check", { device: dev, exitCode: probe.exitCode });
    const fh = await open(dev, "r");
    try {
      const buf = Buffer.alloc(blankCheckBytes);
      let n = 0;
      for (let r = 1; r > 0 && n < buf.length; n += r) r = (await fh.read(buf, n, buf.length - n, n)).bytesRead;
      const at = buf.subarray(0, n).findIndex((b) => b !== 0);
      if (at >= 0) throw new DeviceNotBlankError(dev, `${op} ${dev}: the disk is not LUKS2 and not blank (non-zero byte at offset ${at}); refusing to format it`);
    } finally {
      await fh.close();
    }
  }

  /** #mappingActive says whether our mapping exists; it must be on `dev`. No device-mapper at all counts as inactive. */
  async #mappingActive(dev: string, op: string): Promise<boolean> {
    const r = await this.#cs.run(["status", this.mappingName], { op, device: dev, okExitCodes: [0, 1, 4] });
    if (r.exitCode === 1 && /Cannot initialize device-mapper/i.test(r.stderr)) return false;
    if (r.exitCode === 1) throw new CryptsetupError("invalid-argument", dev, `${op}: cryptsetup status ${this.mappingName} failed: ${r.stderr.split("\n")[0]}`);
    const st = parseStatus(r.stdout);
    if (r.exitCode === 4 || !st.active) return false;
    const canonical = (p: string): Promise<string> => realpath(p).catch(() => p);
    if (!st.device || (await canonical(st.device)) !== (await canonical(dev))) {
      throw new CryptsetupError("invalid-argument", dev, `${op} ${dev}: mapping ${this.mappingName} is open on ${st.device ?? "another device"}, not on ${dev}`);
    }
    return true;
  }

  /**
   * #activate opens the mapping with `src` and mounts it (mkfs first only when `allowMkfs` and no
   * filesystem is there). Returns whether it made the filesystem, or undefined when a key *file*
   * opens no keyslot. A failure after open closes the mapping again.
   */
  async #activate(dev: string, src: KeySource, allowMkfs: boolean, op: string): Promise<boolean | undefined> {
    const viaFile = "file" in src;
    const ctx = { op: `${op} (open)`, device: dev, keyContext: true, okExitCodes: viaFile ? [0, 2] : [0], ...(viaFile ? {} : { key: src.key }) };
    const r = await this.#cs.run(["open", "--type", "luks2", "--key-file", viaFile ? src.file : "-", dev, this.mappingName], ctx);
    if (r.exitCode === 2) return undefined;
    try {
      await this.#waitForMapper(dev, op);
      return await this.#ensureMounted(dev, async () => allowMkfs, op);
    } catch (err) {
      await this.#cs.run(["close", this.mappingName], { op: `${op} (close after failure)`, device: dev, okExitCodes: [0, 4] }).catch(() => undefined);
      throw err;
    }
  }

  async #waitForMapper(dev: string, op: string): Promise<void> {
    const deadline = Date.now() + (this.#o.mapperTimeoutMs ?? 10_000);
    for (;;) {
      if (await stat(this.#mapperPath).then(() => true, () => false)) return;
      if (Date.now() >= deadline) throw new VolumeCommandError("timeout", dev, `${op} ${dev}: ${this.#mapperPath} did not appear after cryptsetup open`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** #ensureMounted mounts the mapping at the mount point (mkfs.ext4 first if empty and allowMkfs() says so); returns whether it ran mkfs. */
  async #ensureMounted(dev: string, allowMkfs: () => Promise<boolean>, op: string): Promise<boolean> {
    const source = await this.#mountedSource(op);
    if (this.#isOurs(source)) return false;
    if (source !== undefined) throw new VolumeCommandError("device-busy", dev, `${op}: ${this.mountPoint} already has ${source} mounted`);
    const probe = await this.#tool("blkid", ["-p", "-s", "TYPE", "-o", "value", this.#mapperPath], op, [0, 2]);
    const fsType = probe.exitCode === 0 ? probe.stdout.trim() : undefined;
    let made = false;
    if (fsType === undefined && (await allowMkfs())) {
      await this.#tool("mkfs.ext4", ["-q", this.#mapperPath], op);
      made = true;
    } else if (fsType !== "ext4") {
      throw new VolumeCommandError("command-failed", dev, `${op} ${dev}: the opened volume holds ${fsType ? `a ${fsType} filesystem` : "no filesystem"}, not ext4; refusing to mount or format it`);
    }
    await mkdir(this.mountPoint, { recursive: true, mode: 0o700 });
    await this.#tool("mount", ["-t", "ext4", "-o", "nodev,nosuid,noexec", this.#mapperPath, this.mountPoint], op);
    await chmod(this.mountPoint, 0o700); // the filesystem's root: secrets live here
    this.#log.info("state volume mounted", { device: dev, mountPoint: this.mountPoint, formatted: made });
    return made;
  }

  async #mountedSource(op: string): Promise<string | undefined> {
    const r = await this.#tool("findmnt", ["--noheadings", "--output", "SOURCE", "--mountpoint", this.mountPoint], op, [0, 1]);
    return r.exitCode === 0 ? r.stdout.trim().split("\n")[0] : undefined;
  }

  #isOurs(source: string | undefined): boolean {
    return source === this.#mapperPath || source === `/dev/mapper/${this.mappingName}`;
  }

  /** #tool runs a non-cryptsetup child and throws VolumeCommandError unless its exit status is in `ok`. */
  async #tool(file: string, args: string[], op: string, ok: readonly number[] = [0]): Promise<ExecResult & { exitCode: number }> {
    const r = await this.#exec(file, args, { timeoutMs: this.#o.commandTimeoutMs ?? defaultCommandTimeoutMs });
    const what = `${op}: ${file} ${args.join(" ")}`;
    if (r.timedOut) throw new VolumeCommandError("timeout", this.device, `${what}: did not finish in time`);
    if (r.exitCode === undefined) throw new VolumeCommandError("command-failed", this.device, `${what}: could not run (${r.spawnCode ?? r.signal ?? "unknown"})`);
    if (!ok.includes(r.exitCode)) {
      const said = (r.stderr || r.stdout).replace(/\s+/g, " ").trim().slice(0, 300);
      throw new VolumeCommandError("command-failed", this.device, `${what}: exit ${r.exitCode}${said ? `: ${said}` : ""}`, { exitCode: r.exitCode });
    }
    return { ...r, exitCode: r.exitCode };
  }
}
