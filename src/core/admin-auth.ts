import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import nacl from "tweetnacl";
import type { Clock } from "./clock.js";
import type { ClusterStore } from "./cluster-store.js";
import { InvalidArgumentError, PermissionDeniedError } from "./errors.js";

/** adminPubKeyBytes is the length of the admin's Ed25519 public key. */
export const adminPubKeyBytes = 32;

/** adminChallengeBytes is the length of a server challenge. */
export const adminChallengeBytes = 32;

/** adminSignatureBytes is the length of an admin signature (Ed25519). */
export const adminSignatureBytes = 64;

const adminDomain = "attested-mesh admin v1";

/**
 * adminMessage is what the admin signs for one admin RPC: the domain, the method name, the admin's
 * cluster ID (from admin.json), the server's single-use challenge and the serialized request, each
 * length-prefixed so no two inputs collide. The cluster ID stops a host that activated a Coordinator
 * of its own with the admin's (public) key from using the admin's signatures there.
 */
export function adminMessage(method: string, clusterID: Uint8Array, challenge: Uint8Array, request: Uint8Array): Buffer {
  const part = (b: Uint8Array): Buffer[] => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return [len, Buffer.from(b)];
  };
  return Buffer.concat([...part(Buffer.from(adminDomain)), ...part(Buffer.from(method)), ...part(clusterID), ...part(challenge), ...part(request)]);
}

/** signAdminRequest signs one admin request for cluster `clusterID` with the admin's Ed25519 secret key (64 bytes, tweetnacl form). */
export function signAdminRequest(secretKey: Uint8Array, clusterID: Uint8Array, method: string, challenge: Uint8Array, request: Uint8Array): Buffer {
  return Buffer.from(nacl.sign.detached(adminMessage(method, clusterID, challenge, request), secretKey));
}

/** SignedAdminRequest is an admin RPC as it arrived: method, challenge, request bytes, signature. */
export interface SignedAdminRequest {
  method: string;
  challenge: Uint8Array;
  request: Uint8Array;
  signature: Uint8Array;
}

/**
 * AdminGrant is the proof, inside the process, that one admin request passed every check. Only
 * AdminChallenges.verify makes one; each admin operation takes it and uses it once.
 */
export class AdminGrant {
  readonly method: string;
  #used = false;
  private constructor(method: string) {
    this.method = method;
  }

  /** use checks the grant is for `method` and was not used before; it throws otherwise. */
  use(method: string): void {
    if (this.method !== method || this.#used || !grants.has(this)) throw new PermissionDeniedError(`${method}: admin signature: no valid grant for this operation`);
    this.#used = true;
    grants.delete(this);
  }

  /** @internal */
  static issue(method: string): AdminGrant {
    const g = new AdminGrant(method);
    grants.add(g);
    return g;
  }
}

const grants = new WeakSet<AdminGrant>();

/** AdminChallengesOptions configure AdminChallenges. */
export interface AdminChallengesOptions {
  clock: Clock;
  /** ttlMs is how long a challenge can be used (default 60 s). */
  ttlMs?: number;
}

/** Challenge layout: issue time (ms, u64 BE) ‖ 8 random bytes ‖ 16-byte HMAC-SHA256 of the first 16 under a per-process key. */
const challengeMacBytes = 16;

/**
 * AdminChallenges hands out single-use challenges and verifies admin requests against them.
 * Challenges are stateless (authenticated by an HMAC under a key that never leaves this process),
 * so anonymous callers asking for many cannot evict the admin's; only a challenge whose admin
 * signature verified is remembered, until it expires, so it works once. Safe for concurrent use.
 */
export class AdminChallenges {
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #key = randomBytes(32);
  /** #used maps hex challenge → expiry (ms) of challenges consumed by a valid admin request. */
  readonly #used = new Map<string, number>();

  constructor(options: AdminChallengesOptions) {
    this.#clock = options.clock;
    this.#ttlMs = options.ttlMs ?? 60_000;
  }

  /** issue returns a fresh 32-byte challenge; it remembers nothing. */
  issue(): Buffer {
    const head = Buffer.alloc(adminChallengeBytes - challengeMacBytes);
    head.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.#clock.now()))));
    randomBytes(8).copy(head, 8);
    return Buffer.concat([head, this.#mac(head)]);
  }

  /**
   * verify checks `req` for `method` against the admin's public key and this Coordinator's cluster ID
   * and consumes its challenge; it returns a grant for that method or throws PermissionDeniedError
   * naming the failed check.
   */
  verify(req: SignedAdminRequest, method: string, adminPubKey: Uint8Array | undefined, clusterID: Uint8Array): AdminGrant {
    if (req.signature.length === 0 && req.challenge.length === 0) {
      throw new PermissionDeniedError(`${method}: admin signature: missing (admin requests must be signed with the admin key made by meshctl activate)`);
    }
    if (req.challenge.length !== adminChallengeBytes) throw new PermissionDeniedError(`${method}: admin challenge: must be ${adminChallengeBytes} bytes, got ${req.challenge.length}`);
    const expiry = this.#check(Buffer.from(req.challenge));
    if (expiry === undefined) throw new PermissionDeniedError(`${method}: admin challenge: unknown, expired or already used (get a fresh one with GetAdminChallenge)`);
    if (req.method !== method) throw new PermissionDeniedError(`${method}: admin signature: made for ${req.method}`);
    if (!adminPubKey) throw new PermissionDeniedError(`${method}: admin key: this Coordinator has none stored`);
    if (req.signature.length !== adminSignatureBytes) throw new PermissionDeniedError(`${method}: admin signature: must be ${adminSignatureBytes} bytes, got ${req.signature.length}`);
    if (!nacl.sign.detached.verify(adminMessage(method, clusterID, req.challenge, req.request), req.signature, adminPubKey)) {
      throw new PermissionDeniedError(`${method}: admin signature: does not verify with the admin key for this cluster (another key, another cluster, another method or other request bytes)`);
    }
    // Check-and-set in one synchronous step: of two concurrent uses of one challenge, one wins.
    const id = Buffer.from(req.challenge).toString("hex");
    if (this.#used.has(id)) throw new PermissionDeniedError(`${method}: admin challenge: unknown, expired or already used (get a fresh one with GetAdminChallenge)`);
    this.#used.set(id, expiry);
    return AdminGrant.issue(method);
  }

  /** #check returns the challenge's expiry when this process issued it, it has not expired and was not used. */
  #check(challenge: Buffer): number | undefined {
    const now = this.#clock.now();
    for (const [k, exp] of this.#used) if (exp <= now) this.#used.delete(k);
    const head = challenge.subarray(0, adminChallengeBytes - challengeMacBytes);
    if (!timingSafeEqual(this.#mac(head), challenge.subarray(adminChallengeBytes - challengeMacBytes))) return undefined;
    const issued = Number(head.readBigUInt64BE(0));
    const expiry = issued + this.#ttlMs;
    if (issued > now || expiry <= now || this.#used.has(challenge.toString("hex"))) return undefined;
    return expiry;
  }

  #mac(head: Buffer): Buffer {
    return createHmac("sha256", this.#key).update(head).digest().subarray(0, challengeMacBytes);
  }
}

/** checkAdminPubKey validates the admin's Ed25519 public key from the network. */
export function checkAdminPubKey(key: Uint8Array | undefined, field = "adminPubKey"): Buffer {
  if (!key || key.length !== adminPubKeyBytes) throw new InvalidArgumentError(`${field}: must be ${adminPubKeyBytes} bytes (Ed25519), got ${key?.length ?? 0}`);
  return Buffer.from(key);
}

/**
 * AdminGate checks admin requests on a Coordinator: single-use challenges, and the signature by the
 * admin key the store holds over the method, this cluster's ID, the challenge and the request bytes.
 */
export class AdminGate {
  readonly #cluster: ClusterStore;
  readonly #challenges: AdminChallenges;
  /** #known caches the cluster ID and admin public key once read (see identity). */
  #known: { clusterID: Buffer; adminKey: Buffer } | undefined;

  constructor(cluster: ClusterStore, clock: Clock) {
    this.#cluster = cluster;
    this.#challenges = new AdminChallenges({ clock });
  }

  /** challenge returns a fresh single-use challenge. */
  challenge(): Buffer {
    return this.#challenges.issue();
  }

  /** authorize returns the grant an admin operation needs, or throws PermissionDeniedError naming the failed check; it changes nothing else. */
  async authorize(req: SignedAdminRequest, method: string): Promise<AdminGrant> {
    const { clusterID, adminKey } = await this.identity();
    return this.#challenges.verify(req, method, adminKey, clusterID);
  }

  /**
   * identity is the cluster ID and the admin's public key, read from the store once: both are
   * public and fixed for the cluster's life, so checking an admin's signature needs no store read —
   * with the store's quorum lost the admin then hears that, not a failed read.
   */
  async identity(): Promise<{ clusterID: Buffer; adminKey: Buffer | undefined }> {
    if (this.#known) return this.#known;
    const [{ clusterID }, adminKey] = await Promise.all([this.#cluster.secrets(), this.#cluster.adminKey()]);
    if (adminKey) this.#known = { clusterID, adminKey };
    return { clusterID, adminKey };
  }
}
