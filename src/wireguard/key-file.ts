import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readFile, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { WireGuardError } from "./errors.js";
import { encodeKey, generatePrivateKeyBytes, parseKey } from "./keys.js";

/** LoadedKey is a private key read from (or just written to) its key file. */
export interface LoadedKey {
  /** privateKey is the 32 raw bytes; the caller must not log them. */
  privateKey: Uint8Array;
  /** created is true when the file did not exist and a fresh key was generated. */
  created: boolean;
  /** tightened is true when the file's mode allowed group/other access and was set back to 0600. */
  tightened: boolean;
}

/**
 * loadOrCreatePrivateKey reads the base64 private key in `path` (the format of `wg genkey`), or,
 * when the file does not exist, generates a clamped key and writes it atomically with mode 0600
 * (a temporary file hard-linked into place, so a concurrent creator never overwrites it and a crash
 * never leaves half a key). A restarted peer therefore keeps its WireGuard identity. A file readable
 * by group/other is set back to 0600. The parent directory is created with mode 0700 if missing.
 * Errors name the path, never the key.
 */
export async function loadOrCreatePrivateKey(path: string): Promise<LoadedKey> {
  try {
    const existing = await readKey(path);
    if (existing) return existing;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const key = generatePrivateKeyBytes();
    const tmp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(`${encodeKey(key)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const winner = await readKey(path); // someone else created it first: use theirs
      if (!winner) throw err;
      return winner;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    return { privateKey: key, created: true, tightened: false };
  } catch (err) {
    if (err instanceof WireGuardError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const kind = code === "EACCES" || code === "EPERM" ? "permission-denied" : "internal";
    throw new WireGuardError(kind, `private key file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function readKey(path: string): Promise<LoadedKey | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const privateKey = parseKey(text, `private key file ${path}`);
  let tightened = false;
  if (((await stat(path)).mode & 0o077) !== 0) {
    await chmod(path, 0o600);
    tightened = true;
  }
  return { privateKey, created: false, tightened };
}
