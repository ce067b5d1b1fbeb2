/**
 * admin.json, the admin's record of its cluster (meshctl activate writes it beside wg0.conf and
 * admin.key): one reader that checks every field meshctl uses, and one atomic rewrite that keeps
 * the fields it does not know. No secret is in it (admin.key holds the signing key).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../shared/atomic-file.js";

/** adminFileName is admin.json's name inside the admin directory (--admin-dir, --out). */
export const adminFileName = "admin.json";

/** AdminFile is a checked admin.json. */
export interface AdminFile {
  path: string;
  ownerID: Buffer;
  clusterID: Buffer;
  /** adminPubKey is the admin's Ed25519 public key (base64), when the file names it. */
  adminPubKey: string | undefined;
  /** coordinatorEndpoints are the Coordinators' pubapi endpoints (HOST:PORT), the first Coordinator's included. */
  coordinatorEndpoints: string[];
  /** fields are every field as read (a rewrite keeps those meshctl does not interpret). */
  fields: Record<string, unknown>;
}

const hex64 = /^[0-9a-f]{64}$/;

/**
 * readAdminFile reads and checks DIR/admin.json; `missing` says, when there is none, where the
 * command expects it. Every error names the file and the field.
 */
export async function readAdminFile(dir: string, missing: string): Promise<AdminFile> {
  const file = await readAdminFileIfAny(dir);
  if (!file) throw new Error(`${join(dir, adminFileName)}: not found (${missing})`);
  return file;
}

/** readAdminFileIfAny is readAdminFile, but undefined when there is no admin.json. */
export async function readAdminFileIfAny(dir: string): Promise<AdminFile | undefined> {
  const path = join(dir, adminFileName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new Error(`${path}: cannot read (${code ?? (err as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${path}: must be a JSON object`);
  const fields = v as Record<string, unknown>;
  const id = (f: "ownerId" | "clusterId"): Buffer => {
    const x = fields[f];
    if (typeof x !== "string" || !hex64.test(x)) throw new Error(`${path}: ${f} must be 64 lower-case hex characters`);
    return Buffer.from(x, "hex");
  };
  const ownerID = id("ownerId");
  const clusterID = id("clusterId");
  const pub = fields.adminPubKey;
  if (pub !== undefined && (typeof pub !== "string" || Buffer.from(pub, "base64").length !== 32)) throw new Error(`${path}: adminPubKey must be a base64 Ed25519 public key (32 bytes)`);
  const list = fields.coordinatorEndpoints ?? [];
  if (!Array.isArray(list) || list.some((e) => typeof e !== "string" || e === "" || e.length > 300)) {
    throw new Error(`${path}: coordinatorEndpoints must be a list of HOST:PORT strings`);
  }
  const first = fields.coordinatorPublicEndpoint;
  if (first !== undefined && (typeof first !== "string" || first === "")) throw new Error(`${path}: coordinatorPublicEndpoint must be a HOST:PORT string`);
  const coordinatorEndpoints = [...new Set([...(list as string[]), ...(first !== undefined ? [first] : [])])];
  return { path, ownerID, clusterID, adminPubKey: pub, coordinatorEndpoints, fields };
}

/**
 * updateCoordinatorEndpoints rewrites admin.json's coordinatorEndpoints (atomically, other fields
 * kept) to `change(known)`; without an admin.json there is nothing to do.
 */
export async function updateCoordinatorEndpoints(dir: string, change: (known: string[]) => string[]): Promise<void> {
  const file = await readAdminFileIfAny(dir);
  if (!file) return;
  const before = Array.isArray(file.fields.coordinatorEndpoints) ? (file.fields.coordinatorEndpoints as string[]) : [];
  const after = change(before);
  if (after.length === before.length && after.every((e, i) => e === before[i])) return;
  await writeFileAtomic(file.path, `${JSON.stringify({ ...file.fields, coordinatorEndpoints: after }, null, 2)}\n`);
}
