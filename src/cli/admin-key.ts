import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import nacl from "tweetnacl";
import { writeFileAtomic } from "../core/store-memory.js";
import type { AdminSigner } from "../pubapi/admin.js";

/** adminKeyFile is the admin signing key's file name, beside admin.json. */
export const adminKeyFile = "admin.key";

/** adminKeySeedBytes is the file's size: the raw Ed25519 seed. */
const adminKeySeedBytes = 32;

/** AdminKey is the admin's Ed25519 signing key. Never print secretKey. */
export interface AdminKey extends AdminSigner {
  /** publicKey is what the Coordinator stores at activation (32 bytes). */
  publicKey: Buffer;
}

/** generateAdminKey makes a fresh admin signing key (tweetnacl Ed25519). */
export function generateAdminKey(): { key: AdminKey; seed: Buffer } {
  const seed = Buffer.from(nacl.randomBytes(adminKeySeedBytes));
  return { key: keyOf(seed), seed };
}

/** writeAdminKey writes the seed as DIR/admin.key, mode 0600, atomically. */
export async function writeAdminKey(dir: string, seed: Buffer): Promise<string> {
  const path = join(dir, adminKeyFile);
  await writeFileAtomic(path, seed);
  return path;
}

/**
 * readAdminKey reads DIR/admin.key (the directory of admin.json): it must be a regular file of
 * exactly 32 bytes that only its owner can read, and match the adminPubKey of DIR/admin.json when
 * that file names one. Errors say what to fix and never show the key.
 */
export async function readAdminKey(dir: string): Promise<AdminKey> {
  const path = join(dir, adminKeyFile);
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`admin key ${path}: ${code === "ENOENT" ? "not found (admin-signed commands read it from the directory of admin.json: --admin-dir DIR)" : (code ?? "cannot read")}`);
  }
  if (!info.isFile()) throw new Error(`admin key ${path}: not a regular file`);
  if ((info.mode & 0o077) !== 0) throw new Error(`admin key ${path}: readable by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  if (info.size !== adminKeySeedBytes) throw new Error(`admin key ${path}: must hold ${adminKeySeedBytes} bytes, holds ${info.size}`);
  const key = keyOf(await readFile(path));
  const expected = await readFile(join(dir, "admin.json"), "utf8").then(
    (t) => (JSON.parse(t) as { adminPubKey?: unknown }).adminPubKey,
    () => undefined,
  );
  if (typeof expected === "string" && expected !== key.publicKey.toString("base64")) {
    throw new Error(`admin key ${path}: does not match adminPubKey in ${join(dir, "admin.json")}`);
  }
  return key;
}

function keyOf(seed: Uint8Array): AdminKey {
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: Buffer.from(kp.publicKey), secretKey: kp.secretKey };
}
