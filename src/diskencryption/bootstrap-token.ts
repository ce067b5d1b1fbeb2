/**
 * The bootstrap token: a small PUBLIC JSON document kept in the LUKS2 header as a token of type
 * "attested-mesh-bootstrap" (`{"type", "keyslots": [], "version": 1, "data"}`), readable without
 * any key. After a reboot the state volume is locked, so what a peer needs before it can ask a
 * Coordinator for the key (its role, VPN IP, IDs, Coordinator endpoints and WireGuard public keys)
 * lives here. The header is not encrypted and its checksums are not keyed: whoever holds the disk
 * can read AND rewrite this document, so it must never hold a secret, and a reader must treat it as
 * a hint until it is confirmed by something authenticated.
 *
 * Tokens are found by type in `luksDump --dump-json-metadata` (not by a fixed ID, which another
 * tool — systemd-cryptenroll, clevis — may already use) and written with `token import --json-file -`;
 * an existing token is replaced with `--token-replace --token-id N`, which cryptsetup 2.6 commits as
 * one LUKS2 metadata update (the header epoch grows by one), so a reader sees the old or the new one.
 */
import { nullLogger, type Logger } from "../shared/logger.js";
import type { NodeStateRecordStore } from "../core/node-state.js";
import { checkNodeStateRecord, type NodeStateRecord } from "../shared/shapes.js";
import { CryptsetupRunner, type Exec } from "./cryptsetup.js";
import { CorruptMetadataError, CryptsetupError, DiskError, TokenTooLargeError } from "./errors.js";
import { requireLUKS2, resolveDevice } from "./header.js";
import { cryptsetupMutex } from "./mutex.js";

/** bootstrapTokenType is the LUKS2 token type of the bootstrap token ("luks2-" types are reserved). */
export const bootstrapTokenType = "attested-mesh-bootstrap";

/** bootstrapTokenVersion is the layout version this code writes and accepts. */
export const bootstrapTokenVersion = 1;

/**
 * maxBootstrapTokenBytes caps the token's JSON (8 KiB). A default LUKS2 header has a 12 KiB JSON
 * area that also holds the keyslots (~0.3 KiB each), segments and digests; a bigger token would
 * make luksAddKey — and so the key rotation — fail for lack of room (cryptsetup 2.6.1 checked).
 */
export const maxBootstrapTokenBytes = 8 * 1024;

/** BootstrapTokenOptions tune the cryptsetup runs of the token functions. */
export interface BootstrapTokenOptions {
  /** cryptsetupPath is the binary (default "cryptsetup" on PATH). */
  cryptsetupPath?: string;
  /** exec replaces the child runner (unit tests). */
  exec?: Exec;
  /** logger receives a debug line per cryptsetup run. Default: silent. */
  logger?: Logger;
  /** commandTimeoutMs bounds each cryptsetup run (default 30 s). */
  commandTimeoutMs?: number;
}


function runner(o: BootstrapTokenOptions | undefined): CryptsetupRunner {
  return new CryptsetupRunner({
    path: o?.cryptsetupPath ?? "cryptsetup",
    timeoutMs: o?.commandTimeoutMs ?? 30_000,
    logger: (o?.logger ?? nullLogger).child("diskencryption"),
    ...(o?.exec ? { exec: o.exec } : {}),
  });
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** findToken returns the ID and body of the one token of our type, undefined when there is none. */
async function findToken(cs: CryptsetupRunner, dev: string, op: string): Promise<{ id: number; token: Json } | undefined> {
  const r = await cs.run(["luksDump", "--dump-json-metadata", dev], { op, device: dev });
  let tokens: Json;
  try {
    const meta: unknown = JSON.parse(r.stdout);
    if (!isObject(meta) || !isObject(meta.tokens ?? {})) throw new TypeError("no tokens object");
    tokens = (meta.tokens ?? {}) as Json;
  } catch (err) {
    throw new CryptsetupError("internal", dev, `${op} ${dev}: cannot parse the LUKS2 metadata`, { cause: err });
  }
  const ours = Object.entries(tokens).filter(([, t]) => isObject(t) && t.type === bootstrapTokenType);
  if (ours.length > 1) {
    const ids = ours.map(([id]) => id).join(", ");
    throw new CorruptMetadataError(dev, `${op} ${dev}: ${ours.length} ${bootstrapTokenType} tokens (IDs ${ids}); expected one`);
  }
  const [found] = ours;
  return found ? { id: Number(found[0]), token: found[1] as Json } : undefined;
}

/** dataOf validates a token's layout and returns its payload. */
function dataOf(found: { id: number; token: Json }, dev: string, op: string): unknown {
  const t = found.token;
  const bad = (what: string): CorruptMetadataError =>
    new CorruptMetadataError(dev, `${op} ${dev}: LUKS2 token ${found.id} (${bootstrapTokenType}) is corrupt: ${what}`);
  if (!Array.isArray(t.keyslots) || t.keyslots.length !== 0) throw bad("it is bound to keyslots");
  if (t.version !== bootstrapTokenVersion) throw bad(`version ${JSON.stringify(t.version)}, expected ${bootstrapTokenVersion}`);
  if (!("data" in t)) throw bad("no data field");
  return t.data;
}

/** encodeToken renders the token for `data`, or throws TypeError / TokenTooLargeError. */
function encodeToken(data: unknown, dev: string, op: string): Buffer {
  let json: string | undefined;
  try {
    json = JSON.stringify({ type: bootstrapTokenType, keyslots: [], version: bootstrapTokenVersion, data });
  } catch (err) {
    throw new TypeError(`${op}: data is not JSON-serializable`, { cause: err });
  }
  if (data === undefined || json === undefined) throw new TypeError(`${op}: data must be a JSON value, got undefined`);
  // cryptsetup's json-c re-serializes the token and writes "/" as "\/": count what it will store.
  const stored = Buffer.byteLength(json.replace(/\//g, "\\/"));
  if (stored > maxBootstrapTokenBytes) {
    throw new TokenTooLargeError(dev, `${op} ${dev}: the token is ${stored} bytes; at most ${maxBootstrapTokenBytes} fit beside the keyslots of a LUKS2 header; nothing was written`);
  }
  return Buffer.from(json);
}

/**
 * readBootstrapToken returns the payload of the device's bootstrap token, or undefined when the
 * LUKS2 header has none. No key is needed. `device` is a LUKS2 file or block device, or the name
 * of an active mapping. Throws NotLUKSError, LUKSVersionError, DeviceNotFoundError, or
 * CorruptMetadataError for a malformed token. Serialized on the cryptsetup mutex.
 */
export function readBootstrapToken(device: string, options?: BootstrapTokenOptions): Promise<unknown> {
  return withToken(device, "read bootstrap token", options, async (_cs, dev, found, op) => (found ? dataOf(found, dev, op) : undefined));
}

/**
 * updateBootstrapToken replaces the token's payload with `fn(current)` (current is undefined when
 * there is no token) in one critical section, so concurrent updaters of this process do not lose
 * each other's fields. A malformed existing token makes it throw CorruptMetadataError (use
 * {@link writeBootstrapToken} to overwrite one). A payload over the size limit throws
 * TokenTooLargeError and writes nothing.
 */
export function updateBootstrapToken(device: string, fn: (current: unknown) => unknown, options?: BootstrapTokenOptions): Promise<void> {
  return writeToken(device, (found, dev, op) => fn(found ? dataOf(found, dev, op) : undefined), options);
}

/**
 * writeBootstrapToken stores `data` (any JSON value; public only) as the device's bootstrap token,
 * replacing an existing one atomically (`--token-replace`, one header commit). Throws
 * TokenTooLargeError (nothing written) above {@link maxBootstrapTokenBytes}. Serialized on the
 * cryptsetup mutex.
 */
export function writeBootstrapToken(device: string, data: unknown, options?: BootstrapTokenOptions): Promise<void> {
  return writeToken(device, () => data, options);
}

/**
 * withToken runs `fn` in one cryptsetup critical section with the resolved LUKS2 device and its
 * bootstrap token (undefined when there is none); `op` names the operation in errors.
 */
function withToken<T>(
  device: string,
  op: string,
  options: BootstrapTokenOptions | undefined,
  fn: (cs: CryptsetupRunner, dev: string, found: { id: number; token: Json } | undefined, op: string) => Promise<T>,
): Promise<T> {
  const cs = runner(options);
  return cryptsetupMutex.run(async () => {
    const dev = await resolveDevice(cs, device, op);
    await requireLUKS2(cs, dev, op);
    return fn(cs, dev, await findToken(cs, dev, op), op);
  });
}

function writeToken(
  device: string,
  next: (found: { id: number; token: Json } | undefined, dev: string, op: string) => unknown,
  options: BootstrapTokenOptions | undefined,
): Promise<void> {
  const op = "write bootstrap token";
  return withToken(device, op, options, async (cs, dev, found) => {
    const input = encodeToken(next(found, dev, op), dev, op);
    const id = found ? ["--token-replace", "--token-id", String(found.id)] : [];
    try {
      await cs.run(["token", "import", ...id, "--json-file", "-", dev], { op, device: dev, input, keyContext: false });
    } catch (err) {
      if (err instanceof DiskError && err.reason === "invalid-argument") {
        throw new CryptsetupError("invalid-argument", dev, `${op} ${dev}: cryptsetup refused the token (is the LUKS2 metadata area full of keyslots?): ${err.message}`, { cause: err });
      }
      throw err;
    }
  });
}

/**
 * LUKSTokenNodeState keeps core's NodeStateRecord (the node state, its sealed MAC key and tag) in the
 * bootstrap token, as the payload fields `nodeState`, `sealedKey` and `tag` (other fields are
 * preserved), so a rebooted peer knows its role and Coordinators while its state volume is still
 * locked. Safe for concurrent use (every call takes the cryptsetup mutex). Anyone holding the disk can
 * rewrite the header: core's AuthenticatedNodeState checks the record's tag before using it.
 */
export class LUKSTokenNodeState implements NodeStateRecordStore {
  readonly #device: string;
  readonly #options: BootstrapTokenOptions | undefined;

  constructor(device: string, options?: BootstrapTokenOptions) {
    if (typeof device !== "string" || device === "") throw new TypeError("LUKSTokenNodeState: device is required");
    this.#device = device;
    this.#options = options;
  }

  /** path names where the state lives, for messages: "<device> (LUKS2 token)". */
  get path(): string {
    return `${this.#device} (LUKS2 token)`;
  }

  /** save validates and writes the record in one header commit. */
  async save(record: NodeStateRecord): Promise<void> {
    let checked: NodeStateRecord;
    try {
      checked = checkNodeStateRecord(record);
    } catch (err) {
      throw new TypeError(`node state: refusing to save an invalid state to ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    await updateBootstrapToken(this.#device, (cur) => ({ ...(isObject(cur) ? cur : {}), ...checked }), this.#options);
  }

  /** load returns the saved record, undefined when there is none, or throws CorruptMetadataError when it is malformed. */
  async load(): Promise<NodeStateRecord | undefined> {
    const data = await readBootstrapToken(this.#device, this.#options);
    if (data === undefined || (isObject(data) && data.nodeState === undefined && data.sealedKey === undefined && data.tag === undefined)) return undefined;
    try {
      if (!isObject(data)) throw new Error("the token's payload is not an object");
      return checkNodeStateRecord(data);
    } catch (err) {
      throw new CorruptMetadataError(this.#device, `node state: ${this.path} is corrupt: ${(err as Error).message}`, { cause: err });
    }
  }
}

