import { access, readFile } from "node:fs/promises";
import { errorMessage, InternalError, PermissionDeniedError } from "./errors.js";
import type { Logger } from "../shared/logger.js";
import { writeFileAtomic } from "../shared/atomic-file.js";
import type { PeerRecord } from "./peer.js";
import { checkNodeState, checkNodeStateRecord, type NodeState, type NodeStateRecord } from "../shared/shapes.js";

/** NodeState, NodeStateRecord and their checks are shared shapes (src/shared/shapes.ts): diskencryption uses them too. */
export { checkNodeState, checkNodeStateRecord, type NodeState, type NodeStateRecord };

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

  /** save writes the record atomically, keeping the record it replaces as `<path>.prev`. */
  async save(record: NodeStateRecord): Promise<void> {
    await writeFileAtomic(this.#path, `${JSON.stringify(record, null, 2)}\n`, { keepPrevious: true });
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
      const prev = `${this.#path}.prev`;
      const kept = await access(prev).then(
        () => `the copy it replaced is ${prev}: check it and move it into place to start from it`,
        () => "there is no earlier copy",
      );
      throw new InternalError(`node state: ${this.#path} is corrupt (${(err as Error).message}); it is left as it is; ${kept}`, { cause: err });
    }
  }
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
  /** #written is the Coordinator set last written (JSON). */
  #written: string | undefined;

  constructor(
    private readonly nodeState: NodeStateStore,
    private readonly log: Logger,
  ) {}

  /** remember writes the Coordinators among `peers` to the node state when they changed. */
  async remember(peers: readonly PeerRecord[]): Promise<void> {
    const coordinators = peers.filter((p) => p.role === "coordinator").sort((a, b) => (a.vpnIP < b.vpnIP ? -1 : 1));
    const key = JSON.stringify(coordinators);
    if (coordinators.length === 0 || key === this.#written) return;
    try {
      const saved = await this.nodeState.load();
      if (!saved) return;
      await this.nodeState.save({
        ...saved,
        coordinatorVPNIPs: coordinators.map((p) => p.vpnIP),
        coordinatorEndpoints: coordinators.map((p) => `${p.publicIP}:${p.pubapiPort}`),
        coordinatorPeers: coordinators,
      });
      this.#written = key;
    } catch (err) {
      this.log.warn("could not remember the current Coordinators in the node state", { error: errorMessage(err) });
    }
  }
}
