/**
 * Authenticated node state. The node state is public bootstrap data that the host can rewrite (a file
 * in the state dir, or a LUKS2 header token), and a rebooted Node reads it before it can unlock
 * anything, to know whom to ask for its disk key. So every save makes a fresh random 32-byte MAC key,
 * seals it to the TPM's boot PCRs (KeySealer) and stores the sealed key and an HMAC-SHA256 tag beside
 * the state; every load unseals the key and checks the tag before the state is used. A rewritten
 * state, a sealed key or tag taken from another peer, or boot PCRs that changed make load throw
 * PermissionDeniedError naming the failed check; there is no fallback to an unauthenticated copy.
 *
 * The tag is HMAC-SHA256(key, "attested-mesh node state v1\n" ‖ canonicalJSON({nodeState, pcrs,
 * public})): it covers every NodeState field and binds the sealed object's public area (and so its
 * PCR policy). The key itself never leaves memory unsealed and is zeroed after use.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { PermissionDeniedError } from "./errors.js";
import { canonicalJSON, type NodeState, type NodeStateRecord, type NodeStateRecordStore, type NodeStateStore } from "./node-state.js";
import type { PeerRecord } from "./peer.js";
import type { KeySealer, SealedKey } from "./sealer.js";

/** macKeyBytes is the length of the node-state MAC key. */
export const macKeyBytes = 32;

const tagLabel = "attested-mesh node state v1\n";

/** nodeStateTag computes a record's tag (hex) under `key`. Exported for tests. */
export function nodeStateTag(key: Uint8Array, state: NodeState, sealedKey: SealedKey): string {
  const covered = { nodeState: projectNodeState(state), pcrs: sealedKey.pcrs, public: sealedKey.public };
  return createHmac("sha256", key).update(tagLabel).update(canonicalJSON(covered)).digest("hex");
}

/**
 * AuthenticatedNodeState is the NodeStateStore a peer uses: it keeps NodeStateRecords in `records`
 * and authenticates them with keys from `sealer`. Not safe for concurrent save calls (a peer saves
 * once per activation); load and verified may run at any time. A state that was loaded and verified
 * is kept in memory, so later loads in this process never re-read what the host may since have
 * rewritten.
 */
export class AuthenticatedNodeState implements NodeStateStore {
  readonly #records: NodeStateRecordStore;
  readonly #sealer: KeySealer;
  #current: NodeStateRecord | undefined;

  constructor(records: NodeStateRecordStore, sealer: KeySealer) {
    this.#records = records;
    this.#sealer = sealer;
    if (sealer.pcrs.some((p) => p === 11 || p === 12)) {
      throw new TypeError("AuthenticatedNodeState: the sealer must not bind to PCR 11 or 12 (the activation markers are reset by a reboot and extended again)");
    }
  }

  /** path names where the records are kept. */
  get path(): string {
    return this.#records.path;
  }

  /** save seals a new MAC key, tags `state` and writes the record; it completes before the caller marks the TPM. */
  async save(state: NodeState): Promise<void> {
    const nodeState = projectNodeState(state);
    const key = randomBytes(macKeyBytes);
    try {
      const sealedKey = await this.#sealer.seal(key);
      const record: NodeStateRecord = { nodeState, sealedKey, tag: nodeStateTag(key, nodeState, sealedKey) };
      await this.#records.save(record);
      this.#current = record;
    } finally {
      key.fill(0);
    }
  }

  /** load returns the authenticated state, undefined when none was saved; it throws PermissionDeniedError when a check fails. */
  async load(): Promise<NodeState | undefined> {
    if (this.#current) return structuredClone(this.#current.nodeState);
    const record = await this.#records.load();
    if (!record) return undefined;
    await this.#authenticate(record);
    this.#current = record;
    return structuredClone(record.nodeState);
  }

  /**
   * verified returns the copy inside the unlocked state disk when the records store keeps one, after
   * checking that it equals the authenticated public copy (`publicCopy`, as load returned it).
   */
  async verified(publicCopy: NodeState): Promise<NodeState> {
    const current = this.#current;
    if (!current) throw new PermissionDeniedError(`node state: ${this.path} was not loaded and authenticated before the disk was unlocked`);
    if (canonicalJSON(projectNodeState(publicCopy)) !== canonicalJSON(current.nodeState)) {
      throw new PermissionDeniedError(`node state: the state to verify is not the one authenticated from ${this.path}`);
    }
    if (!this.#records.verified) return structuredClone(current.nodeState);
    const inner = await this.#records.verified(current);
    return structuredClone(inner.nodeState);
  }

  async #authenticate(record: NodeStateRecord): Promise<void> {
    const want = [...this.#sealer.pcrs].sort((a, b) => a - b).join(",");
    const got = [...record.sealedKey.pcrs].sort((a, b) => a - b).join(",");
    if (want !== got) {
      throw new PermissionDeniedError(`node state: ${this.path} has its MAC key sealed to PCRs ${got}, but this peer seals to PCRs ${want}; refusing to use it`);
    }
    let key: Buffer;
    try {
      key = await this.#sealer.unseal(record.sealedKey);
    } catch (err) {
      if (err instanceof PermissionDeniedError) {
        throw new PermissionDeniedError(`node state: ${this.path}: ${err.message}; refusing to use it`, { cause: err });
      }
      throw err;
    }
    try {
      const expected = Buffer.from(nodeStateTag(key, record.nodeState, record.sealedKey), "hex");
      const tag = Buffer.from(record.tag, "hex");
      if (tag.length !== expected.length || !timingSafeEqual(tag, expected)) {
        throw new PermissionDeniedError(`node state: the HMAC tag in ${this.path} does not match its contents (the state was rewritten, or the tag comes from another record); refusing to use it`);
      }
    } finally {
      key.fill(0);
    }
  }
}

/** projectNodeState copies exactly NodeState's fields, so the tag covers the same thing on save and load. */
function projectNodeState(s: NodeState): NodeState {
  const peer = (p: PeerRecord): PeerRecord => ({ role: p.role, publicIP: p.publicIP, vpnIP: p.vpnIP, vpnPubKey: p.vpnPubKey, wgPort: p.wgPort, pubapiPort: p.pubapiPort });
  return {
    role: s.role,
    vpnIP: s.vpnIP,
    ownerID: s.ownerID,
    clusterID: s.clusterID,
    coordinatorVPNIPs: [...s.coordinatorVPNIPs],
    coordinatorEndpoints: [...s.coordinatorEndpoints],
    coordinatorPeers: s.coordinatorPeers.map(peer),
    ...(s.coordinatorAuthPubKey !== undefined ? { coordinatorAuthPubKey: s.coordinatorAuthPubKey } : {}),
  };
}
