import { randomBytes } from "node:crypto";
import nacl from "tweetnacl";
import type { Clock } from "./clock.js";
import { InvalidArgumentError, PermissionDeniedError } from "./errors.js";

/** adminPubKeyBytes is the length of the admin's Ed25519 public key. */
export const adminPubKeyBytes = 32;

/** adminChallengeBytes is the length of a server challenge. */
export const adminChallengeBytes = 32;

/** adminSignatureBytes is the length of an admin signature (Ed25519). */
export const adminSignatureBytes = 64;

const adminDomain = "attested-mesh admin v1";

/**
 * adminMessage is what the admin signs for one admin RPC: the domain, the method name, the server's
 * single-use challenge and the serialized request, each length-prefixed so no two inputs collide.
 */
export function adminMessage(method: string, challenge: Uint8Array, request: Uint8Array): Buffer {
  const part = (b: Uint8Array): Buffer[] => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return [len, Buffer.from(b)];
  };
  return Buffer.concat([...part(Buffer.from(adminDomain)), ...part(Buffer.from(method)), ...part(challenge), ...part(request)]);
}

/** signAdminRequest signs one admin request with the admin's Ed25519 secret key (64 bytes, tweetnacl form). */
export function signAdminRequest(secretKey: Uint8Array, method: string, challenge: Uint8Array, request: Uint8Array): Buffer {
  return Buffer.from(nacl.sign.detached(adminMessage(method, challenge, request), secretKey));
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

/** AdminChallengesOptions bound the outstanding challenges. */
export interface AdminChallengesOptions {
  clock: Clock;
  /** ttlMs is how long a challenge can be used (default 60 s). */
  ttlMs?: number;
  /** maxOutstanding bounds remembered challenges; the oldest is dropped past it (default 64). */
  maxOutstanding?: number;
}

/**
 * AdminChallenges hands out single-use challenges and verifies admin requests against them. A
 * challenge is forgotten when used (whether or not the signature verifies), when it expires, or
 * when more than maxOutstanding are waiting (oldest first). Safe for concurrent use.
 */
export class AdminChallenges {
  readonly #o: Required<AdminChallengesOptions>;
  /** #outstanding maps hex challenge → expiry (ms), in issue order. */
  readonly #outstanding = new Map<string, number>();

  constructor(options: AdminChallengesOptions) {
    this.#o = { ttlMs: 60_000, maxOutstanding: 64, ...options };
  }

  /** issue returns a fresh 32-byte challenge and remembers it. */
  issue(): Buffer {
    this.#expire();
    while (this.#outstanding.size >= this.#o.maxOutstanding) this.#outstanding.delete(this.#outstanding.keys().next().value!);
    const c = randomBytes(adminChallengeBytes);
    this.#outstanding.set(c.toString("hex"), this.#o.clock.now() + this.#o.ttlMs);
    return c;
  }

  /**
   * verify checks `req` for `method` against the admin's public key and consumes its challenge; it
   * returns a grant for that method or throws PermissionDeniedError naming the failed check.
   */
  verify(req: SignedAdminRequest, method: string, adminPubKey: Uint8Array | undefined): AdminGrant {
    if (req.signature.length === 0 && req.challenge.length === 0) {
      throw new PermissionDeniedError(`${method}: admin signature: missing (admin requests must be signed with the admin key made by meshctl activate)`);
    }
    if (req.challenge.length !== adminChallengeBytes) throw new PermissionDeniedError(`${method}: admin challenge: must be ${adminChallengeBytes} bytes, got ${req.challenge.length}`);
    if (!this.#consume(req.challenge)) throw new PermissionDeniedError(`${method}: admin challenge: unknown, expired or already used (get a fresh one with GetAdminChallenge)`);
    if (req.method !== method) throw new PermissionDeniedError(`${method}: admin signature: made for ${req.method}`);
    if (!adminPubKey) throw new PermissionDeniedError(`${method}: admin key: this Coordinator has none stored`);
    if (req.signature.length !== adminSignatureBytes) throw new PermissionDeniedError(`${method}: admin signature: must be ${adminSignatureBytes} bytes, got ${req.signature.length}`);
    if (!nacl.sign.detached.verify(adminMessage(method, req.challenge, req.request), req.signature, adminPubKey)) {
      throw new PermissionDeniedError(`${method}: admin signature: does not verify with the admin key (another key, another method or other request bytes)`);
    }
    return AdminGrant.issue(method);
  }

  #consume(challenge: Uint8Array): boolean {
    this.#expire();
    // Challenges are random and public once sent: a plain lookup leaks nothing worth timing.
    return this.#outstanding.delete(Buffer.from(challenge).toString("hex"));
  }

  #expire(): void {
    const now = this.#o.clock.now();
    for (const [k, exp] of this.#outstanding) if (exp <= now) this.#outstanding.delete(k);
  }
}

/** checkAdminPubKey validates the admin's Ed25519 public key from the network. */
export function checkAdminPubKey(key: Uint8Array | undefined, field = "adminPubKey"): Buffer {
  if (!key || key.length !== adminPubKeyBytes) throw new InvalidArgumentError(`${field}: must be ${adminPubKeyBytes} bytes (Ed25519), got ${key?.length ?? 0}`);
  return Buffer.from(key);
}
