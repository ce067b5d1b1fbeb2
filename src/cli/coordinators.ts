import { join } from "node:path";
import { CoreError, errorMessage } from "../core/errors.js";
import type { PeerRecord } from "../core/peer.js";
import { adminFileName, readAdminFileIfAny, updateCoordinatorEndpoints } from "./admin-file.js";
import { UsageError, type IO } from "./command.js";
import { endpointFlag } from "./endpoint.js";

/**
 * coordinatorEndpoints returns the Coordinators an admin command may talk to: --coordinator first
 * (when given), then every Coordinator admin.json in adminDir lists. Throws UsageError when there is none.
 */
export async function coordinatorEndpoints(flag: string | boolean | undefined, adminDir: string): Promise<string[]> {
  const out: string[] = [];
  if (typeof flag === "string" && flag !== "") out.push(endpointFlag(flag, "--coordinator"));
  const admin = await readAdminFileIfAny(adminDir);
  for (const e of admin?.coordinatorEndpoints ?? []) if (!out.includes(e)) out.push(e);
  if (out.length === 0) throw new UsageError(`--coordinator is required (${join(adminDir, adminFileName)} lists no Coordinator)`);
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
