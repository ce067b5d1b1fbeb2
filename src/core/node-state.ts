import { readFile } from "node:fs/promises";
import { errorMessage, InternalError, PermissionDeniedError } from "./errors.js";
import type { Logger } from "./logger.js";
import { writeFileAtomic } from "./store-memory.js";
import { checkPeerSet, type PeerRecord } from "./peer.js";
import { checkSealedKey, type SealedKey } from "./sealer.js";
import { checkIP } from "./validate.js";

/**
 * NodeState is what a peer remembers about its own activation, so that after a restart it knows
 * its role, VPN IP and where its Coordinators are (DESIGN.md: persisted before the TPM is marked).
 * It holds no secret: owner and cluster IDs are public identifiers.
 */
export interface NodeState {
  role: "coordinator" | "node";
  vpnIP: string;
  ownerID: string;
  clusterID: string;
  /** coordinatorVPNIPs are where the vpnapi is served (Nodes only; Coordinators list themselves). */
  coordinatorVPNIPs: string[];
  /** coordinatorEndpoints are the Coordinators' public pubapi endpoints, for re-joining after a reboot. */
  coordinatorEndpoints: string[];
  /**
   * coordinatorPeers are the Coordinators' WireGuard peers (public keys and addresses only), so a
   * rebooted Node whose device came back empty can reach the vpnapi through the VPN again.
   */
  coordinatorPeers: PeerRecord[];
  /**
   * coordinatorAuthPubKey is the cluster credential's public key (base64, 32 bytes Ed25519), given
   * at activation (Nodes only): the Node acts only for callers that sign their connection with it.
   */
  coordinatorAuthPubKey?: string;
}

/**
 * NodeStateStore is what a peer uses to keep its NodeState across reboots. Implemented by
 * AuthenticatedNodeState (node-state-auth.ts), which authenticates every state it loads.
 */
export interface NodeStateStore {
  /** path names where the state is kept, for messages. */
  readonly path: string;
  /** save replaces the state durably; it completes before the caller marks the TPM. */
  save(state: NodeState): Promise<void>;
  /** load returns the saved state, undefined when there is none, or throws when it is corrupt or not authentic. */
  load(): Promise<NodeState | undefined>;
  /**
   * verified, when the store keeps a second copy inside the encrypted state disk, returns that copy
   * once the disk is unlocked and throws when the public copy differs from it. Stores without such a
   * copy leave it undefined.
   */
  verified?(publicCopy: NodeState): Promise<NodeState>;
}

/**
 * NodeStateRecord is the stored form of a NodeState: the state, the MAC key sealed to the TPM's boot
 * PCRs, and `tag`, the hex HMAC-SHA256 under that key (node-state-auth.ts defines what it covers).
 */
export interface NodeStateRecord {
  nodeState: NodeState;
  sealedKey: SealedKey;
  tag: string;
}

/**
 * NodeStateRecordStore keeps a NodeStateRecord where it survives a reboot and is readable before the
 * state disk is unlocked: a file (NodeStateFile) or the LUKS2 header. It does not authenticate:
 * anyone holding the disk may have rewritten what load returns.
 */
export interface NodeStateRecordStore {
  /** path names where the record is kept, for messages. */
  readonly path: string;
  /** save replaces the record durably (one atomic write). */
  save(record: NodeStateRecord): Promise<void>;
  /** load returns the saved record, undefined when there is none, or throws when it is malformed. */
  load(): Promise<NodeStateRecord | undefined>;
  /**
   * verified, when the store keeps a second copy inside the encrypted state disk, returns that copy
   * once the disk is unlocked and throws PermissionDeniedError when `publicCopy` differs from it.
   */
  verified?(publicCopy: NodeStateRecord): Promise<NodeStateRecord>;
}

/**
 * MirroredNodeState keeps the public bootstrap copy (`bootstrap`, e.g. a LUKS2 token readable while
 * the disk is locked) and a copy inside the encrypted state disk (`inner`). save writes the inner
 * copy first; load reads the bootstrap copy; verified compares the two records after unlock.
 */
export class MirroredNodeState implements NodeStateRecordStore {
  readonly #bootstrap: NodeStateRecordStore;
  readonly #inner: NodeStateRecordStore;

  constructor(bootstrap: NodeStateRecordStore, inner: NodeStateRecordStore) {
    this.#bootstrap = bootstrap;
    this.#inner = inner;
  }

  get path(): string {
    return `${this.#bootstrap.path} and ${this.#inner.path}`;
  }

  async save(record: NodeStateRecord): Promise<void> {
    await this.#inner.save(record);
    await this.#bootstrap.save(record);
  }

  load(): Promise<NodeStateRecord | undefined> {
    return this.#bootstrap.load();
  }

  async verified(publicCopy: NodeStateRecord): Promise<NodeStateRecord> {
    const inner = await this.#inner.load();
    if (!inner) throw new InternalError(`node state: ${this.#inner.path} is missing inside the unlocked state disk`);
    if (canonicalJSON(inner) !== canonicalJSON(publicCopy)) {
      throw new PermissionDeniedError(`node state: the bootstrap copy in ${this.#bootstrap.path} differs from the one inside the state disk (it was altered); refusing to use it`);
    }
    return inner;
  }
}

/** NodeStateFile reads and writes a NodeStateRecord as a JSON file with mode 0600, atomically. */
export class NodeStateFile implements NodeStateRecordStore {
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  /** path is the file's location. */
  get path(): string {
    return this.#path;
  }

  /** save writes the record atomically. */
  async save(record: NodeStateRecord): Promise<void> {
    await writeFileAtomic(this.#path, `${JSON.stringify(record, null, 2)}\n`);
  }

  /** load returns the saved record, undefined when there is none, or throws when it is malformed. */
  async load(): Promise<NodeStateRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new InternalError(`node state: read ${this.#path}`, { cause: err });
    }
    try {
      return checkNodeStateRecord(JSON.parse(text));
    } catch (err) {
      throw new InternalError(`node state: ${this.#path} is corrupt: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** checkNodeStateRecord validates a parsed NodeStateRecord and returns a copy with only its fields. */
export function checkNodeStateRecord(value: unknown): NodeStateRecord {
  const v = value as Partial<NodeStateRecord> | null;
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
  if (typeof v.tag !== "string" || !/^[0-9a-f]{64}$/.test(v.tag)) throw new Error("tag: must be 64 lower-case hex characters");
  let nodeState: NodeState;
  try {
    nodeState = checkNodeState(structuredClone(v.nodeState));
  } catch (err) {
    throw new Error(`nodeState: ${(err as Error).message}`, { cause: err });
  }
  return { nodeState, sealedKey: checkSealedKey(v.sealedKey), tag: v.tag };
}

/** checkNodeState validates a parsed NodeState (from a file or a LUKS2 token) and returns it. */
export function checkNodeState(value: unknown): NodeState {
  const v = value as NodeState;
  if (typeof v !== "object" || v === null) throw new Error("not an object");
  if (v.role !== "coordinator" && v.role !== "node") throw new Error("role");
  checkIP(v.vpnIP, "vpnIP");
  if (!/^[0-9a-f]{64}$/.test(v.ownerID) || !/^[0-9a-f]{64}$/.test(v.clusterID)) throw new Error("ownerID/clusterID");
  if (!Array.isArray(v.coordinatorVPNIPs) || !Array.isArray(v.coordinatorEndpoints)) throw new Error("coordinators");
  v.coordinatorVPNIPs.forEach((ip, i) => checkIP(ip, `coordinatorVPNIPs[${i}]`));
  if (!v.coordinatorEndpoints.every((e) => typeof e === "string" && e.length < 300)) throw new Error("coordinatorEndpoints");
  v.coordinatorPeers = checkPeerSet(v.coordinatorPeers ?? [], "coordinatorPeers");
  if (v.coordinatorAuthPubKey !== undefined && (typeof v.coordinatorAuthPubKey !== "string" || Buffer.from(v.coordinatorAuthPubKey, "base64").length !== 32)) {
    throw new Error("coordinatorAuthPubKey");
  }
  return v;
}

/** canonicalJSON renders a JSON value with sorted object keys, so equal values render equal. */
export function canonicalJSON(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJSON).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJSON((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/**
 * KnownCoordinators keeps the node state's Coordinators current (VPN IPs, endpoints, records), so
 * that after a restart a peer can reach every Coordinator there is, not only those of its
 * activation. Failures are logged: the running peer does not depend on them.
 */
export class KnownCoordinators {
  readonly #nodeState: NodeStateStore;
  readonly #log: Logger;
  /** #written is the Coordinator set last written (JSON). */
  #written: string | undefined;

  constructor(nodeState: NodeStateStore, log: Logger) {
    this.#nodeState = nodeState;
    this.#log = log;
  }

  /** remember writes the Coordinators among `peers` to the node state when they changed. */
  async remember(peers: readonly PeerRecord[]): Promise<void> {
    const coordinators = peers.filter((p) => p.role === "coordinator").sort((a, b) => (a.vpnIP < b.vpnIP ? -1 : 1));
    const key = JSON.stringify(coordinators);
    if (coordinators.length === 0 || key === this.#written) return;
    try {
      const saved = await this.#nodeState.load();
      if (!saved) return;
      await this.#nodeState.save({
        ...saved,
        coordinatorVPNIPs: coordinators.map((p) => p.vpnIP),
        coordinatorEndpoints: coordinators.map((p) => `${p.publicIP}:${p.pubapiPort}`),
        coordinatorPeers: coordinators,
      });
      this.#written = key;
    } catch (err) {
      this.#log.warn("could not remember the current Coordinators in the node state", { error: errorMessage(err) });
    }
  }
}
