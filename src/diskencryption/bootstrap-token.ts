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
import { isIP } from "node:net";
import type { Logger } from "../core/logger.js";
import type { NodeState, NodeStateRecord, NodeStateRecordStore } from "../core/node-state.js";
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

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

function runner(o: BootstrapTokenOptions | undefined): CryptsetupRunner {
  return new CryptsetupRunner({
    path: o?.cryptsetupPath ?? "cryptsetup",
    timeoutMs: o?.commandTimeoutMs ?? 30_000,
    logger: (o?.logger ?? silent).child("diskencryption"),
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
  const op = "read bootstrap token";
  const cs = runner(options);
  return cryptsetupMutex.run(async () => {
    const dev = await resolveDevice(cs, device, op);
    await requireLUKS2(cs, dev, op);
    const found = await findToken(cs, dev, op);
    return found ? dataOf(found, dev, op) : undefined;
  });
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

function writeToken(
  device: string,
  next: (found: { id: number; token: Json } | undefined, dev: string, op: string) => unknown,
  options: BootstrapTokenOptions | undefined,
): Promise<void> {
  const op = "write bootstrap token";
  const cs = runner(options);
  return cryptsetupMutex.run(async () => {
    const dev = await resolveDevice(cs, device, op);
    await requireLUKS2(cs, dev, op);
    const found = await findToken(cs, dev, op);
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

/**
 * checkNodeStateRecord makes the checks of core's checkNodeStateRecord (see checkNodeState for why
 * they are written twice) and returns a copy with only the record's fields.
 */
export function checkNodeStateRecord(v: unknown): NodeStateRecord {
  if (!isObject(v)) throw new Error("not an object");
  if (typeof v.tag !== "string" || !/^[0-9a-f]{64}$/.test(v.tag)) throw new Error("tag: must be 64 lower-case hex characters");
  let nodeState: NodeState;
  try {
    nodeState = checkNodeState(v.nodeState);
  } catch (err) {
    throw new Error(`nodeState: ${(err as Error).message}`, { cause: err });
  }
  const k = v.sealedKey;
  if (!isObject(k)) throw new Error("sealedKey: not an object");
  const pcrs = k.pcrs;
  if (!Array.isArray(pcrs) || pcrs.length === 0 || pcrs.length > 24) throw new Error("sealedKey.pcrs: must list 1 to 24 PCRs");
  if (!pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23) || new Set(pcrs).size !== pcrs.length) {
    throw new Error("sealedKey.pcrs: must be distinct integers from 0 to 23");
  }
  const b64 = (x: unknown, name: string): string => {
    if (typeof x !== "string" || x.length === 0 || x.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(x)) {
      throw new Error(`sealedKey.${name}: must be base64 of at most 2048 characters`);
    }
    return x;
  };
  return { nodeState, sealedKey: { pcrs: [...(pcrs as number[])], public: b64(k.public, "public"), private: b64(k.private, "private") }, tag: v.tag };
}

/**
 * checkNodeState makes the checks of core's checkNodeState (this layer may not import core at run
 * time — DESIGN.md's layer table; test/unit/state-volume-node-state.test.ts keeps the two in step).
 * It returns a copy with only NodeState's fields, or throws an Error naming the bad field.
 */
export function checkNodeState(v: unknown): NodeState {
  if (!isObject(v)) throw new Error("not an object");
  if (v.role !== "coordinator" && v.role !== "node") throw new Error("role: must be coordinator or node");
  const ip = (x: unknown, field: string): string => {
    if (typeof x !== "string" || isIP(x) === 0) throw new Error(`${field}: not an IP address`);
    return x;
  };
  const hex = (x: unknown, field: string): string => {
    if (typeof x !== "string" || !/^[0-9a-f]{64}$/.test(x)) throw new Error(`${field}: must be 64 lower-case hex characters`);
    return x;
  };
  if (!Array.isArray(v.coordinatorVPNIPs) || !Array.isArray(v.coordinatorEndpoints)) throw new Error("coordinators: must be arrays");
  if (!v.coordinatorEndpoints.every((e) => typeof e === "string" && e.length < 300)) throw new Error("coordinatorEndpoints: must be strings under 300 characters");
  const peersIn: unknown = v.coordinatorPeers ?? [];
  if (!Array.isArray(peersIn)) throw new Error("coordinatorPeers: must be an array");
  const seenIP = new Set<string>();
  const seenKey = new Set<string>();
  const coordinatorPeers = peersIn.map((p: unknown, i) => {
    const f = `coordinatorPeers[${i}]`;
    if (!isObject(p)) throw new Error(`${f}: must be a peer`);
    if (p.role !== "coordinator" && p.role !== "node" && p.role !== "admin") throw new Error(`${f}.role: must be coordinator, node or admin`);
    const admin = p.role === "admin";
    const port = (x: unknown, field: string): number => {
      if (typeof x !== "number" || !Number.isInteger(x) || x < (admin ? 0 : 1) || x > 65535) throw new Error(`${f}.${field}: not a port`);
      return x;
    };
    if (typeof p.vpnPubKey !== "string" || !/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(p.vpnPubKey)) throw new Error(`${f}.vpnPubKey: not a WireGuard key`);
    const rec = {
      role: p.role as NodeState["coordinatorPeers"][number]["role"],
      publicIP: admin && (p.publicIP === "" || p.publicIP === undefined) ? "" : ip(p.publicIP, `${f}.publicIP`),
      vpnIP: ip(p.vpnIP, `${f}.vpnIP`),
      vpnPubKey: p.vpnPubKey,
      wgPort: port(p.wgPort, "wgPort"),
      pubapiPort: port(p.pubapiPort, "pubapiPort"),
    };
    if (seenIP.has(rec.vpnIP) || seenKey.has(rec.vpnPubKey)) throw new Error(`${f}: VPN IP or public key appears twice`);
    seenIP.add(rec.vpnIP);
    seenKey.add(rec.vpnPubKey);
    return rec;
  });
  return {
    role: v.role,
    vpnIP: ip(v.vpnIP, "vpnIP"),
    ownerID: hex(v.ownerID, "ownerID"),
    clusterID: hex(v.clusterID, "clusterID"),
    coordinatorVPNIPs: v.coordinatorVPNIPs.map((x, i) => ip(x, `coordinatorVPNIPs[${i}]`)),
    coordinatorEndpoints: [...(v.coordinatorEndpoints as string[])],
    coordinatorPeers,
    ...(v.coordinatorAuthPubKey !== undefined ? { coordinatorAuthPubKey: authPubKey(v.coordinatorAuthPubKey) } : {}),
  };
}

function authPubKey(x: unknown): string {
  if (typeof x !== "string" || !/^[A-Za-z0-9+/]{43}=$/.test(x)) throw new Error("coordinatorAuthPubKey: must be a base64 32-byte Ed25519 public key");
  return x;
}
