import type { CallerContext, CallerVerifier } from "./caller.js";
import { verifyConnectionSignature } from "./coordinator-auth.js";
import { PermissionDeniedError } from "./errors.js";

/**
 * authorizeCoordinator lets a call from a Coordinator through only when its caller proved, on the
 * call's own TLS connection, attested evidence that satisfies `verifier` (this peer's policy) and,
 * when `clusterKey` is given (an activated Node), the cluster credential's signature over the
 * connection's keying material. Throws PermissionDeniedError naming the failed check. A proof made
 * for another connection fails both checks: its document binds another nonce, its signature another
 * message.
 */
export async function authorizeCoordinator(
  operation: string,
  caller: CallerContext,
  verifier: CallerVerifier,
  clusterKey: Buffer | undefined | "none",
): Promise<void> {
  const proof = caller.proof;
  if (!proof || proof.document.length === 0) {
    throw new PermissionDeniedError(`${operation}: caller proof: missing (only an attested Coordinator may call this)`);
  }
  if (clusterKey === undefined) {
    throw new PermissionDeniedError(`${operation}: cluster credential: this peer has none (it was not activated as a Node with caller authentication)`);
  }
  if (clusterKey !== "none" && !verifyConnectionSignature(clusterKey, caller.ekm, proof.clusterSignature)) {
    throw new PermissionDeniedError(`${operation}: cluster credential: the caller did not sign this connection as a Coordinator of this Node's cluster`);
  }
  try {
    await verifier.verify(proof, caller.ekm);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new PermissionDeniedError(`${operation}: ${msg}`, { cause: err });
  }
}
