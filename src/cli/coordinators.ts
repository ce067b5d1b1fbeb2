import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../core/store-memory.js";
import { CoreError, errorMessage } from "../core/errors.js";
import type { PeerRecord } from "../core/peer.js";
import { UsageError, type IO } from "./command.js";
import { endpointFlag } from "./endpoint.js";

/** AdminFile is the part of admin.json the admin commands read. */
interface AdminFile {
  coordinatorPublicEndpoint?: string;
  /** coordinatorEndpoints are every Coordinator's pubapi endpoint the admin knows (HOST:PORT). */
  coordinatorEndpoints?: string[];
}

async function readAdminFile(adminDir: string): Promise<AdminFile | undefined> {
  try {
    return JSON.parse(await readFile(join(adminDir, "admin.json"), "utf8")) as AdminFile;
  } catch {
    return undefined;
  }
}

/**
 * coordinatorEndpoints returns the Coordinators an admin command may talk to: --coordinator first
 * (when given), then every Coordinator admin.json in adminDir lists. Throws UsageError when there is none.
 */
export async function coordinatorEndpoints(flag: string | boolean | undefined, adminDir: string): Promise<string[]> {
  const out: string[] = [];
  if (typeof flag === "string" && flag !== "") out.push(endpointFlag(flag, "--coordinator"));
  const admin = await readAdminFile(adminDir);
  for (const e of [...(admin?.coordinatorEndpoints ?? []), ...(admin?.coordinatorPublicEndpoint ? [admin.coordinatorPublicEndpoint] : [])]) {
    if (typeof e === "string" && !out.includes(e)) out.push(e);
  }
  if (out.length === 0) throw new UsageError(`--coordinator is required (${join(adminDir, "admin.json")} lists no Coordinator)`);
  return out;
}

/**
 * answered says whether an error came from a Coordinator that answered (so trying another one
 * cannot help, or would repeat a change): anything but UNAVAILABLE, and UNAVAILABLE that names the
 * store's quorum (the Coordinator answered that no change can be committed).
 */
function answered(err: unknown): boolean {
  if (!(err instanceof CoreError)) return true;
  return err.code !== "unavailable" || /quorum/i.test(err.message);
}

/**
 * tryCoordinators runs `fn` against each Coordinator in turn until one answers: a Coordinator that
 * cannot be reached is reported on stderr and the next is tried; an answer (success or refusal) ends
 * it, except a refusal `declined` says another Coordinator can serve (also reported).
 */
export async function tryCoordinators<T>(endpoints: readonly string[], io: IO, fn: (endpoint: string) => Promise<T>, declined?: (err: unknown) => boolean): Promise<T> {
  let last: unknown;
  for (const ep of endpoints) {
    try {
      return await fn(ep);
    } catch (err) {
      const passOn = declined?.(err) === true;
      if (answered(err) && !passOn) throw err;
      last = err;
      io.err(`  Coordinator ${ep} ${passOn ? "declined" : "did not answer"} (${errorMessage(err)}); trying the next one`);
    }
  }
  throw last;
}

/** rememberCoordinators adds Coordinators (from an activation result) to admin.json's coordinatorEndpoints. */
export async function rememberCoordinators(adminDir: string, coordinators: readonly PeerRecord[]): Promise<void> {
  await updateCoordinatorEndpoints(adminDir, (known) => [...new Set([...known, ...coordinators.map((c) => `${c.publicIP}:${c.pubapiPort}`)])]);
}

/** forgetCoordinator drops a removed Coordinator's endpoint from admin.json's coordinatorEndpoints. */
export async function forgetCoordinator(adminDir: string, endpoint: string): Promise<void> {
  await updateCoordinatorEndpoints(adminDir, (known) => known.filter((e) => e !== endpoint));
}

/** updateCoordinatorEndpoints rewrites admin.json's coordinatorEndpoints (atomically); no admin.json, nothing to do. */
async function updateCoordinatorEndpoints(adminDir: string, change: (known: string[]) => string[]): Promise<void> {
  const admin = (await readAdminFile(adminDir)) as (AdminFile & Record<string, unknown>) | undefined;
  if (!admin) return;
  const before = admin.coordinatorEndpoints ?? [];
  const after = change(before);
  if (after.length === before.length && after.every((e, i) => e === before[i])) return;
  admin.coordinatorEndpoints = after;
  await writeFileAtomic(join(adminDir, "admin.json"), `${JSON.stringify(admin, null, 2)}\n`);
}
