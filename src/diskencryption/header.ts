/**
 * Steps on one LUKS header that LUKSDisk composes: resolving the device, checking the header
 * version, finding the keyslot a key opens, listing keyslots. Callers hold cryptsetupMutex.
 */
import { stat } from "node:fs/promises";
import { CryptsetupRunner, maxKeyBytes, parseKeyslotIDs, parseKeyslotLine, parseStatus } from "./cryptsetup.js";
import { CryptsetupError, DeviceNotFoundError, DiskError, LUKSVersionError, NotLUKSError } from "./errors.js";

/** KeySource is a key in memory (sent on stdin) or a key file (passed by path). */
export type KeySource = { key: Uint8Array } | { file: string };

/** isMappingName says whether `device` names a device-mapper mapping: a bare word or a /dev/mapper/ path. */
export function isMappingName(device: string): boolean {
  return !device.includes("/") || device.startsWith("/dev/mapper/");
}

/**
 * resolveDevice returns the path of the device holding the LUKS header: for a mapping, its
 * backing device (`cryptsetup status`); for a path, the path after checking it exists and is a
 * file or block device. Throws DeviceNotFoundError, NotLUKSError or CryptsetupError.
 */
export async function resolveDevice(cs: CryptsetupRunner, device: string, op: string): Promise<string> {
  if (isMappingName(device)) {
    const name = device.replace(/^\/dev\/mapper\//, "");
    const r = await cs.run(["status", name], { op, device, okExitCodes: [0, 4] });
    const st = parseStatus(r.stdout);
    if (r.exitCode === 4 || !st.active) {
      throw new DeviceNotFoundError(device, `${op} ${device}: no active device-mapper mapping named ${JSON.stringify(name)}`);
    }
    if (!st.type?.startsWith("LUKS")) {
      throw new NotLUKSError(device, `${op} ${device}: mapping ${name} is of type ${st.type ?? "unknown"}, not LUKS`);
    }
    if (!st.device) throw new CryptsetupError("internal", device, `${op} ${device}: cryptsetup status names no backing device`);
    return st.device;
  }
  try {
    const s = await stat(device);
    if (!s.isFile() && !s.isBlockDevice()) {
      throw new CryptsetupError("invalid-argument", device, `${op} ${device}: not a regular file or block device`);
    }
  } catch (err) {
    if (err instanceof DiskError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new DeviceNotFoundError(device, `${op} ${device}: no such device or file`, { cause: err });
    }
    throw new CryptsetupError("permission-denied", device, `${op} ${device}: cannot stat (${code ?? "error"})`, { cause: err });
  }
  return device;
}

/** requireLUKS2 throws NotLUKSError for no LUKS header and LUKSVersionError for LUKS1 (one run when it is LUKS2). */
export async function requireLUKS2(cs: CryptsetupRunner, dev: string, op: string): Promise<void> {
  const v2 = await cs.run(["isLuks", "--type", "luks2", dev], { op, device: dev, okExitCodes: [0, 1] });
  if (v2.exitCode === 0) return;
  const any = await cs.run(["isLuks", dev], { op, device: dev, okExitCodes: [0, 1] });
  if (any.exitCode !== 0) throw new NotLUKSError(dev, `${op} ${dev}: not a LUKS device (no LUKS header found)`);
  throw new LUKSVersionError(dev, `${op} ${dev}: LUKS1 header; only LUKS2 is supported (cryptsetup convert --type luks2 converts it)`);
}

/**
 * unlockKeyslot returns the keyslot that `src` opens (`open --test-passphrase`, no mapping is
 * made), or undefined for a wrong key. One PBKDF run per keyslot tried.
 */
export async function unlockKeyslot(cs: CryptsetupRunner, dev: string, op: string, src: KeySource): Promise<number | undefined> {
  const keyFile = "file" in src ? src.file : "-";
  const r = await cs.run(["open", "--test-passphrase", "-v", "--key-file", keyFile, dev], {
    op,
    device: dev,
    keyContext: true,
    okExitCodes: [0, 2],
    ...("key" in src ? { key: src.key } : {}),
  });
  if (r.exitCode === 2) return undefined;
  const slot = parseKeyslotLine(r.stdout, "unlocked");
  if (slot === undefined) throw new CryptsetupError("internal", dev, `${op} ${dev}: cryptsetup did not say which keyslot opened`);
  return slot;
}

/** listKeyslots returns the IDs of the header's keyslots (no key needed). */
export async function listKeyslots(cs: CryptsetupRunner, dev: string, op: string): Promise<number[]> {
  const r = await cs.run(["luksDump", "--dump-json-metadata", dev], { op, device: dev });
  try {
    return parseKeyslotIDs(r.stdout);
  } catch (err) {
    throw new CryptsetupError("internal", dev, `${op} ${dev}: cannot parse the LUKS2 metadata`, { cause: err });
  }
}

/** checkKey throws CryptsetupError("invalid-argument") unless key is 1 to maxKeyBytes bytes. It never echoes the key. */
export function checkKey(key: Uint8Array, field: string, dev: string): void {
  if (!(key instanceof Uint8Array) || key.length < 1 || key.length > maxKeyBytes) {
    const n = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
    throw new CryptsetupError("invalid-argument", dev, `${field}: must be 1 to ${maxKeyBytes} bytes, got ${n}`);
  }
}

/** fileExists says whether `path` exists; other stat failures throw CryptsetupError("permission-denied"). */
export async function fileExists(path: string, dev: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return false;
    throw new CryptsetupError("permission-denied", dev, `cannot stat key file ${path} (${code ?? "error"})`, { cause: err });
  }
}
