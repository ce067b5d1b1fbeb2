/**
 * LUKSDisk: core's StateDisk on a LUKS2 header, through the `cryptsetup` binary.
 *
 * Key handling: keys go to cryptsetup only on its stdin (`--key-file -`, or `-` as the new-key
 * file); they are never on a command line and never in a file we write. That beats a private
 * temp dir (mkdtemp 0700 + 0600 files removed in `finally`): a crash or SIGKILL between write
 * and `finally` would leave a key on disk, and /tmp may be persistent. `/dev/fd/N` is not an
 * option either: Node's child pipes are socketpairs, which cannot be re-opened through /proc.
 * Every operation needs at most one in-memory key because the old passphrase of a rotation is
 * the initial key *file*, passed by path.
 */
import type { StateDisk } from "../core/disk.js";
import { nullLogger, type Logger } from "../shared/logger.js";
import { CryptsetupRunner, luks2MaxKeyslots, parseKeyslotLine, pbkdfArgs, type PBKDFOptions } from "./cryptsetup.js";
import { AlreadyFormattedError, CryptsetupError, KeyFileNotFoundError, LUKSVersionError, NoFreeKeyslotError, NotLUKSError, WrongKeyError } from "./errors.js";
import { checkKey, fileExists, isMappingName, listKeyslots, requireLUKS2, resolveDevice, unlockKeyslot } from "./header.js";
import { cryptsetupMutex } from "./mutex.js";

/** defaultInitialKeyFile is where the image puts the key the state disk was formatted with. */
export const defaultInitialKeyFile = "/run/cryptsetup-keys.d/state.key";

/** defaultCommandTimeoutMs bounds one cryptsetup run (argon2 unlocks take seconds). */
export const defaultCommandTimeoutMs = 120_000;

/** LUKSDiskOptions configure a {@link LUKSDisk}. */
export interface LUKSDiskOptions {
  /**
   * device is a path to a LUKS2 block device or file, or the name of an active device-mapper
   * mapping ("state", or "/dev/mapper/state") whose backing device is then used. A relative file
   * path must contain a slash ("./disk.img"); a bare word is a mapping name.
   */
  device: string;
  /** initialKeyFile holds the passphrase the disk opens with before rotation, as the whole file (default {@link defaultInitialKeyFile}). */
  initialKeyFile?: string;
  /** cryptsetupPath is the binary to run (default "cryptsetup" on PATH). */
  cryptsetupPath?: string;
  /** logger receives debug lines per cryptsetup run and info lines per change; never keys. Default: silent. */
  logger?: Logger;
  /** pbkdf is used for keyslots this object creates (format, updatePassphrase); undefined: cryptsetup's defaults. */
  pbkdf?: PBKDFOptions;
  /** commandTimeoutMs bounds each cryptsetup run (default {@link defaultCommandTimeoutMs}). */
  commandTimeoutMs?: number;
}

/** FormatOptions tune {@link LUKSDisk.format}. */
export interface FormatOptions {
  /** allowOverwrite lets format destroy an existing LUKS header (and with it the data). Default false. */
  allowOverwrite?: boolean;
  /** pbkdf overrides the disk's pbkdf options for the first keyslot. */
  pbkdf?: PBKDFOptions;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;


/**
 * LUKSDisk implements core's StateDisk on a LUKS2 header. Every public method takes the
 * process-wide cryptsetup mutex for its whole duration, so methods are safe to call concurrently
 * (they run one after another) and a rotation is never interleaved with another call of this
 * process. No close() is needed: nothing is held between calls.
 */
export class LUKSDisk implements StateDisk {
  /** device is the device as configured (path or mapping name). */
  readonly device: string;
  /** initialKeyFile is the path of the initial key file. */
  readonly initialKeyFile: string;
  private readonly pbkdf: PBKDFOptions | undefined;
  private readonly cs: CryptsetupRunner;
  private readonly log: Logger;

  constructor(options: LUKSDiskOptions) {
    if (typeof options?.device !== "string" || options.device.trim() === "") {
      throw new TypeError("LUKSDisk: options.device is required (a path or a mapping name)");
    }
    this.device = options.device;
    this.initialKeyFile = options.initialKeyFile ?? defaultInitialKeyFile;
    pbkdfArgs(options.pbkdf); // validate now rather than on first use
    this.pbkdf = options.pbkdf;
    this.log = (options.logger ?? nullLogger).child("diskencryption");
    this.cs = new CryptsetupRunner({
      path: options.cryptsetupPath ?? "cryptsetup",
      timeoutMs: options.commandTimeoutMs ?? defaultCommandTimeoutMs,
      logger: this.log,
    });
  }

  /** devicePath returns the path of the device holding the LUKS header (a mapping resolved to its backing device). */
  devicePath(): Promise<string> {
    return this.locked(() => resolveDevice(this.cs, this.device, "resolve device"));
  }

  /** uuid returns the LUKS UUID in lower case, as `cryptsetup luksUUID` prints it. Throws unless the device is LUKS2. */
  uuid(): Promise<string> {
    return this.locked(async () => {
      const dev = await this.luks2("read UUID");
      const { stdout } = await this.cs.run(["luksUUID", dev], { op: "read UUID", device: dev });
      const uuid = stdout.trim().toLowerCase();
      if (!uuidPattern.test(uuid)) {
        throw new CryptsetupError("internal", dev, `read UUID ${dev}: cryptsetup printed no UUID`);
      }
      return uuid;
    });
  }

  /** isLUKS2 says whether the device holds a LUKS2 header; false for LUKS1 or no header; throws if the device is missing. */
  isLUKS2(): Promise<boolean> {
    return this.locked(async () => {
      try {
        await this.luks2("check LUKS2");
        return true;
      } catch (err) {
        if (err instanceof NotLUKSError || err instanceof LUKSVersionError) return false;
        throw err;
      }
    });
  }

  /** checkLUKS2 throws DeviceNotFoundError, NotLUKSError or LUKSVersionError unless the device holds a LUKS2 header. */
  checkLUKS2(): Promise<void> {
    return this.locked(async () => {
      await this.luks2("check LUKS2");
    });
  }

  /** keyslots returns the IDs of the active keyslots. */
  keyslots(): Promise<number[]> {
    return this.locked(async () => listKeyslots(this.cs, await this.luks2("list keyslots"), "list keyslots"));
  }

  /** testPassphrase says whether `key` opens a keyslot; wrong keys give false, other failures throw. */
  testPassphrase(key: Uint8Array): Promise<boolean> {
    return this.locked(async () => {
      const dev = await this.luks2("test passphrase");
      checkKey(key, "key", dev);
      return (await unlockKeyslot(this.cs, dev, "test passphrase", { key })) !== undefined;
    });
  }

  /**
   * unlockWith verifies that `key` opens the disk (after a reboot, with the key from the
   * Coordinator) and returns the keyslot it opens. Throws WrongKeyError otherwise.
   * It does not create a device-mapper mapping.
   */
  unlockWith(key: Uint8Array): Promise<{ keyslot: number }> {
    return this.locked(async () => {
      const dev = await this.luks2("unlock");
      checkKey(key, "key", dev);
      const keyslot = await unlockKeyslot(this.cs, dev, "unlock", { key });
      if (keyslot === undefined) throw new WrongKeyError(dev, `unlock ${dev}: the key opens no keyslot`);
      return { keyslot };
    });
  }

  /** unlock implements StateDisk.unlock: it verifies that `key` opens the disk (see unlockWith). */
  async unlock(key: Uint8Array): Promise<void> {
    await this.unlockWith(key);
  }

  /**
   * updatePassphrase replaces the initial key with `newKey`: it adds `newKey` to a free keyslot
   * (luksAddKey, authorized by the initial key file), then wipes the keyslot(s) the initial key
   * opens (luksKillSlot, authorized by `newKey`). Each step is one LUKS2 header commit, so an
   * interruption at any point leaves the initial key or the new key (or both) working; calling
   * again with the same key completes the rotation. It is idempotent: if the initial key no longer
   * opens the disk (or its file is gone) but `newKey` does, it returns without change.
   * luksChangeKey is not used: without a free keyslot area it overwrites the keyslot in place, and
   * an interruption then loses both keys (shown by test/integration/disk-interrupt.test.ts).
   */
  updatePassphrase(newKey: Uint8Array): Promise<void> {
    const op = "update passphrase";
    return this.locked(async () => {
      const dev = await this.luks2(op);
      checkKey(newKey, "newKey", dev);
      const file = { file: this.initialKeyFile };
      const haveFile = await fileExists(this.initialKeyFile, dev);
      const oldSlot = haveFile ? await unlockKeyslot(this.cs, dev, op, file) : undefined;
      if (oldSlot === undefined) {
        const slot = await unlockKeyslot(this.cs, dev, op, { key: newKey });
        if (slot !== undefined) {
          // Other entries are another admin's keyslots, or one whose wipe was interrupted after its
          // area was erased (luksKillSlot erases first): no key opens that one, so it is left alone.
          const others = (await listKeyslots(this.cs, dev, op)).filter((s) => s !== slot);
          this.log.info("state disk already uses the new key", { device: dev, keyslot: slot, otherKeyslots: others.join(",") });
          return;
        }
        if (!haveFile) {
          throw new KeyFileNotFoundError(dev, `${op} ${dev}: initial key file ${this.initialKeyFile} does not exist, and the new key opens no keyslot`);
        }
        throw new WrongKeyError(dev, `${op} ${dev}: the initial key file ${this.initialKeyFile} opens no keyslot (nor does the new key)`);
      }
      // An earlier, interrupted call may have added newKey already: then only the wipe is left.
      const before = await listKeyslots(this.cs, dev, op);
      let newSlot = before.length > 1 ? await unlockKeyslot(this.cs, dev, op, { key: newKey }) : undefined;
      if (newSlot === oldSlot) {
        this.log.warn("new state disk key equals the initial key; nothing to change", { device: dev });
        return;
      }
      if (newSlot === undefined) {
        if (before.length >= luks2MaxKeyslots) {
          throw new NoFreeKeyslotError(dev, `${op} ${dev}: all ${luks2MaxKeyslots} keyslots are in use; nothing changed`);
        }
        const { stdout } = await this.cs.run(
          ["luksAddKey", "-v", ...pbkdfArgs(this.pbkdf), "--key-file", this.initialKeyFile, dev, "-"],
          { op: `${op} (add new keyslot)`, device: dev, key: newKey },
        );
        newSlot = parseKeyslotLine(stdout, "created") ?? (await unlockKeyslot(this.cs, dev, op, { key: newKey }));
        if (newSlot === undefined) throw new CryptsetupError("internal", dev, `${op} ${dev}: the new keyslot does not open with the new key`);
      } else {
        this.log.warn("completing an interrupted state disk key rotation", { device: dev, keyslot: newSlot });
      }
      // Wipe every keyslot the initial key opens; the kill is authorized by (and so re-checks) newKey.
      for (let slot: number | undefined = oldSlot, rounds = 0; slot !== undefined; rounds++) {
        if (slot === newSlot) {
          throw new CryptsetupError("internal", dev, `${op} ${dev}: refusing to wipe keyslot ${slot}: it holds the new key`);
        }
        if (rounds >= luks2MaxKeyslots) {
          throw new CryptsetupError("internal", dev, `${op} ${dev}: the initial key still opens keyslot ${slot} after ${rounds} wipes`);
        }
        await this.cs.run(["luksKillSlot", "--key-file", "-", dev, String(slot)], { op: `${op} (wipe keyslot ${slot})`, device: dev, key: newKey });
        this.log.info("state disk key rotated", { device: dev, fromKeyslot: slot, toKeyslot: newSlot });
        const left = await listKeyslots(this.cs, dev, op);
        slot = left.length > 1 ? await unlockKeyslot(this.cs, dev, op, file) : undefined;
      }
    });
  }

  /**
   * format writes a new LUKS2 header with `key` in keyslot 0 (first boot of a VM). It refuses a
   * device that already holds a LUKS header unless `allowOverwrite` is set. It cannot format an
   * active mapping.
   */
  format(key: Uint8Array, options?: FormatOptions): Promise<void> {
    const op = "format";
    return this.locked(async () => {
      if (isMappingName(this.device)) {
        throw new CryptsetupError("invalid-argument", this.device, `${op} ${this.device}: refusing to format an active mapping`);
      }
      const dev = await resolveDevice(this.cs, this.device, op);
      checkKey(key, "key", dev);
      const isLuks = await this.cs.run(["isLuks", dev], { op, device: dev, okExitCodes: [0, 1] });
      if (isLuks.exitCode === 0 && !options?.allowOverwrite) {
        throw new AlreadyFormattedError(dev, `${op} ${dev}: the device already holds a LUKS header; refusing to overwrite it`);
      }
      const pbkdf = pbkdfArgs(options?.pbkdf ?? this.pbkdf);
      await this.cs.run(["luksFormat", "--type", "luks2", "--batch-mode", ...pbkdf, "--key-file", "-", dev], { op, device: dev, key });
      this.log.info("state disk formatted", { device: dev });
    });
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    return cryptsetupMutex.run(fn);
  }

  /** luks2 resolves the device and throws unless it holds a LUKS2 header. */
  private async luks2(op: string): Promise<string> {
    const dev = await resolveDevice(this.cs, this.device, op);
    await requireLUKS2(this.cs, dev, op);
    return dev;
  }
}
