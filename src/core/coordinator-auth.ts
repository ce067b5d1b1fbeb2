import { hkdfSync } from "node:crypto";
import nacl from "tweetnacl";
import { checkMasterSecret, clusterIDBytes } from "./keys.js";
import { InvalidArgumentError, PermissionDeniedError } from "./errors.js";

/** coordinatorAuthInfo is the HKDF label of the cluster credential (DESIGN.md "Keys and IDs"). */
export const coordinatorAuthInfo = "coordinator-auth";

/** coordinatorAuthPubKeyBytes is the length of the cluster credential's public key (Ed25519). */
export const coordinatorAuthPubKeyBytes = 32;

/** connectionSignatureBytes is the length of a cluster signature over a connection (Ed25519). */
export const connectionSignatureBytes = 64;

/** connectionDomain separates cluster signatures from every other use of the key. */
const connectionDomain = Buffer.from("attested-mesh coordinator v1\0");

/**
 * recoveryDomain separates the admin's recovery signature (meshctl recover) from a Coordinator's:
 * a recovery signature never passes as a Coordinator's proof, nor the other way round.
 */
const recoveryDomain = Buffer.from("attested-mesh recover v1\0");

/** connectionMessage is what a Coordinator (or, with recoveryDomain, the admin) signs to prove its cluster on one TLS connection. */
function connectionMessage(ekm: Uint8Array, domain = connectionDomain): Buffer {
  if (ekm.length !== 32) throw new InvalidArgumentError(`connection keying material: must be 32 bytes, got ${ekm.length}`);
  return Buffer.concat([domain, ekm]);
}

/**
 * CoordinatorCredential is the cluster credential's private half: an Ed25519 key whose seed is
 * HKDF-SHA256(masterSecret, salt=clusterID, info="coordinator-auth", 32). Only Coordinators (which
 * hold the master secret) can make it; Nodes get the public key at activation and can verify,
 * never sign. Never log it.
 */
export class CoordinatorCredential {
  readonly #secretKey: Uint8Array;
  /** publicKey is what Nodes keep in their node state (32 bytes). */
  readonly publicKey: Buffer;

  private constructor(seed: Uint8Array) {
    const kp = nacl.sign.keyPair.fromSeed(seed);
    this.#secretKey = kp.secretKey;
    this.publicKey = Buffer.from(kp.publicKey);
  }

  /** derive makes the credential of the cluster (masterSecret, clusterID). */
  static derive(masterSecret: Uint8Array, clusterID: Uint8Array): CoordinatorCredential {
    checkMasterSecret(masterSecret);
    if (clusterID.length !== clusterIDBytes) throw new InvalidArgumentError(`clusterID: must be ${clusterIDBytes} bytes, got ${clusterID.length}`);
    const seed = new Uint8Array(hkdfSync("sha256", masterSecret, clusterID, Buffer.from(coordinatorAuthInfo), 32));
    return new CoordinatorCredential(seed);
  }

  /** signConnection signs a TLS connection's exported keying material (32 bytes). */
  signConnection(ekm: Uint8Array): Buffer {
    return Buffer.from(nacl.sign.detached(connectionMessage(ekm), this.#secretKey));
  }

  /**
   * signRecovery signs a TLS connection for `meshctl recover`: the admin, who holds the master
   * secret but no attested machine, proves it to a rebooted Coordinator waiting for its disk key.
   */
  signRecovery(ekm: Uint8Array): Buffer {
    return Buffer.from(nacl.sign.detached(connectionMessage(ekm, recoveryDomain), this.#secretKey));
  }
}

/**
 * checkRecoverySignature throws PermissionDeniedError (naming the cluster-credential check) unless
 * `signature` is the recovery signature over this connection's `ekm` by the credential `clusterKey`.
 */
export function checkRecoverySignature(op: string, clusterKey: Uint8Array | undefined, ekm: Uint8Array, signature: Uint8Array): void {
  if (!clusterKey) throw new PermissionDeniedError(`${op}: cluster credential: this Coordinator's node state holds none, so it cannot check who sends the key`);
  if (!verifyRecoverySignature(clusterKey, ekm, signature)) {
    throw new PermissionDeniedError(`${op}: cluster credential: the caller did not sign this connection with the credential of this Coordinator's cluster (another master secret, or a signature made for another connection)`);
  }
}

/** verifyRecoverySignature says whether `signature` is `publicKey`'s recovery signature over `ekm` (see signRecovery). */
export function verifyRecoverySignature(publicKey: Uint8Array, ekm: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== coordinatorAuthPubKeyBytes || signature.length !== connectionSignatureBytes || ekm.length !== 32) return false;
  return nacl.sign.detached.verify(connectionMessage(ekm, recoveryDomain), signature, publicKey);
}

/**
 * verifyConnectionSignature says whether `signature` is the cluster credential `publicKey`'s
 * signature over the connection keying material `ekm`. Malformed inputs verify as false.
 */
export function verifyConnectionSignature(publicKey: Uint8Array, ekm: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== coordinatorAuthPubKeyBytes || signature.length !== connectionSignatureBytes || ekm.length !== 32) return false;
  return nacl.sign.detached.verify(connectionMessage(ekm), signature, publicKey);
}
