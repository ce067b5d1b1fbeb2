/**
 * A Coordinator's proof, on one TLS connection to a Node's pubapi, that it is an attested
 * Coordinator (and, once the Node is activated, one of the Node's own cluster). The transport
 * (src/pubapi) supplies the connection's exported keying material; the core decides.
 */

/** CallerProof is what a Coordinator sends with every call to a Node. */
export interface CallerProof {
  /** oid is the attestation extension OID of the document's platform (as in aTLS certificates). */
  oid: string;
  /** document is an attestation document binding nonce = ekm and userData = callerUserData(ekm). */
  document: Uint8Array;
  /** clusterSignature is the cluster credential's signature over the ekm; empty towards a fresh peer. */
  clusterSignature: Uint8Array;
}

/**
 * CallerContext is one call's caller as the transport saw it: the keying material the Node itself
 * exported from the call's TLS connection, and the proof the caller sent (undefined: none).
 */
export interface CallerContext {
  ekm: Buffer;
  proof: CallerProof | undefined;
}

/**
 * CallerVerifier checks a caller's attestation document against this peer's measurement policy,
 * bound to the connection's keying material. It throws PermissionDeniedError naming the failed check.
 */
export interface CallerVerifier {
  verify(proof: CallerProof, ekm: Buffer): Promise<void>;
}
