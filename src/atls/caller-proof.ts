import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";

import { firstFailure, type Issuer, type Validator } from "../attestation/attestation.js";
import type { CallerProof, CallerVerifier } from "../core/caller.js";
import { PermissionDeniedError } from "../core/errors.js";

/**
 * Caller proofs (DESIGN.md "Chain of trust"): a Coordinator calling a Node's pubapi proves what it
 * runs on the very TLS connection the call uses. Both ends export keying material from the
 * connection (RFC 8446 §7.5, label below); the caller's attestation document binds it as its nonce,
 * with a userData that no aTLS certificate document can have. A proof copied to another connection
 * fails: that connection's keying material differs.
 */

/** callerExporterLabel is the TLS exporter label of caller proofs. */
export const callerExporterLabel = "EXPORTER-attested-mesh-caller";

/** callerKeyingMaterialBytes is the length of the exported keying material. */
export const callerKeyingMaterialBytes = 32;

const callerDomain = Buffer.from("attested-mesh caller v1\0");

/** exportCallerKeyingMaterial returns the connection's keying material for caller proofs (same on both ends). */
export function exportCallerKeyingMaterial(socket: TLSSocket): Buffer {
  return socket.exportKeyingMaterial(callerKeyingMaterialBytes, callerExporterLabel, Buffer.alloc(0));
}

/**
 * callerUserData is what a caller document binds besides the nonce: SHA-256("attested-mesh caller
 * v1\0" ‖ ekm). An aTLS certificate document binds SHA-256 of a fresh key's SPKI instead, so a
 * certificate document obtained from a Coordinator's pubapi never passes as a caller proof.
 */
export function callerUserData(ekm: Uint8Array): Buffer {
  return createHash("sha256").update(callerDomain).update(ekm).digest();
}

/** issueCallerDocument asks `issuer` for a document proving the caller on the connection with keying material `ekm`. */
export async function issueCallerDocument(issuer: Issuer, ekm: Uint8Array): Promise<{ oid: string; document: Buffer }> {
  return { oid: issuer.oid, document: Buffer.from(await issuer.issue(ekm, callerUserData(ekm))) };
}

/**
 * createCallerVerifier returns the CallerVerifier of a peer whose policy `validators` express: the
 * proof's OID picks the validator, which must accept the document bound to nonce = ekm and
 * userData = callerUserData(ekm). Failures are PermissionDeniedError naming the check.
 */
export function createCallerVerifier(validators: readonly Validator[]): CallerVerifier {
  return {
    async verify(proof: CallerProof, ekm: Buffer): Promise<void> {
      const validator = validators.find((v) => v.oid === proof.oid);
      if (!validator) {
        throw new PermissionDeniedError(`caller proof: platform ${JSON.stringify(proof.oid.slice(0, 80))} is not accepted by this peer's policy`);
      }
      let verdict;
      try {
        verdict = await validator.validate(proof.document, { nonce: ekm, userData: callerUserData(ekm), requireFresh: false });
      } catch (err) {
        throw new PermissionDeniedError(`caller proof: ${validator.platform} validator failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      if (!verdict.ok) throw new PermissionDeniedError(`caller proof: ${validator.platform} ${firstFailure(verdict) ?? "no check passed"}`);
    },
  };
}
