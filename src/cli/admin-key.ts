import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import nacl from "tweetnacl";
import { readAdminFile } from "./admin-file.js";
import { writeFileAtomic } from "../shared/atomic-file.js";
import type { AdminSigner } from "../pubapi/admin.js";

/** adminKeyFile is the admin signing key's file name, beside admin.json. */
export const adminKeyFile = "admin.key";

/** adminKeySeedBytes is the file's size: the raw Ed25519 seed. */
const adminKeySeedBytes = 32;

/** AdminKey is the admin's Ed25519 signing key. Never print secretKey. */
export interface AdminKey {
  /** publicKey is what the Coordinator stores at activation (32 bytes). */
  publicKey: Buffer;
  secretKey: Uint8Array;
}

/** generateAdminKey makes a fresh admin signing key (tweetnacl Ed25519). */
export function generateAdminKey(): { key: AdminKey; seed: Buffer } {
  return adminKeyOf(Buffer.from(nacl.randomBytes(adminKeySeedBytes)));
}

/** adminKeyOf is the admin signing key of a 32-byte seed (an interrupted activation kept it). */
export function adminKeyOf(seed: Buffer): { key: AdminKey; seed: Buffer } {
  return { key: keyOf(seed), seed };
}

/** writeAdminKey writes the seed as DIR/admin.key, mode 0600, atomically. */
export async function writeAdminKey(dir: string, seed: Buffer): Promise<string> {
  const path = join(dir, adminKeyFile);
  await writeFileAtomic(path, seed);
  return path;
}

/**
 * readAdminKey reads DIR/admin.key and DIR/admin.json: the key must be a regular file of exactly 32
 * bytes that only its owner can read and match admin.json's adminPubKey when it names one; the
 * signer signs for admin.json's clusterId only. Errors say what to fix and never show the key.
 */
export async function readAdminKey(dir: string): Promise<AdminKey & AdminSigner> {
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
  const admin = await readAdminFile(dir, "admin-signed commands need the admin.json that meshctl activate wrote beside admin.key");
  if (admin.adminPubKey !== undefined && admin.adminPubKey !== key.publicKey.toString("base64")) {
    throw new Error(`admin key ${path}: does not match adminPubKey in ${admin.path}`);
  }
  return { ...key, clusterID: admin.clusterID };
}

function keyOf(seed: Uint8Array): AdminKey {
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: Buffer.from(kp.publicKey), secretKey: kp.secretKey };
}
