import type { Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

import type { Validator, Verdict } from "../attestation/attestation.js";
import { findAttestation, inspectCertificate, toPEM, type CertificateInfo } from "./certificate.js";
import { ATLSError } from "./errors.js";
import { newNonce } from "./nonce.js";

/** AttestedCertificate describes the verified peer certificate and the evidence it carried. */
export interface AttestedCertificate {
  pem: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** userData is SHA-256 of the certificate's SPKI DER, lower-case hex: what the document binds. */
  userData: string;
  platform: string;
  oid: string;
  /** document is the attestation document exactly as the extension carried it. */
  document: Buffer;
}

/** AttestedConnection is a TLS connection whose server passed every aTLS check. The caller owns `socket`. */
export interface AttestedConnection {
  socket: TLSSocket;
  verdict: Verdict;
  certificate: AttestedCertificate;
}

/** HandshakeOptions configure one client-side aTLS handshake. */
export interface HandshakeOptions {
  /** validators, one per accepted platform; the certificate's extension OID picks one. */
  validators: readonly Validator[];
  /** requireFresh asks the validator to demand an uninitialized peer (used when activating). */
  requireFresh?: boolean;
  /** now returns ms since the epoch for the certificate validity check; undefined: Date.now. */
  now?: () => number;
  /** requireH2 refuses a server that did not negotiate ALPN "h2" (gRPC needs it); undefined: false. */
  requireH2?: boolean;
  /**
   * onVerified sees the verdict before the connection is accepted; it may throw to refuse the
   * connection (the error becomes an ATLSError with check "policy" unless it is one already).
   */
  onVerified?: (verdict: Verdict, certificate: AttestedCertificate) => void;
  /** signal aborts the handshake; its reason (an ATLSError, ideally) becomes the rejection. */
  signal?: AbortSignal;
}

/**
 * attestedHandshake runs TLS over the connected `socket` with a fresh nonce as SNI, then verifies the
 * server's certificate and attestation before resolving. On any failure it destroys the socket and
 * rejects with an ATLSError naming the failed check. The returned socket keeps a no-op 'error'
 * listener so a late error cannot crash the process before its new owner listens.
 */
export function attestedHandshake(socket: Socket, options: HandshakeOptions): Promise<AttestedConnection> {
  const nonce = newNonce();
  return new Promise<AttestedConnection>((resolve, reject) => {
    let settled = false;
    let handshakeDone = false;
    const tlsSocket = tlsConnect({
      socket,
      servername: nonce.servername,
      ALPNProtocols: ["h2"],
      minVersion: "TLSv1.3",
      // The certificate is self-signed by design; it is checked below, against the attestation.
      rejectUnauthorized: false,
    });
    const onAbort = (): void => {
      const reason: unknown = options.signal?.reason;
      fail(reason instanceof ATLSError ? reason : new ATLSError("timeout", "handshake aborted", { cause: reason }));
    };
    const fail = (err: ATLSError): void => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener("abort", onAbort);
      tlsSocket.destroy();
      socket.destroy();
      reject(err);
    };
    tlsSocket.on("error", (err: Error) => {
      if (!handshakeDone) fail(new ATLSError("handshake", `TLS handshake failed: ${err.message}`, { cause: err }));
    });
    tlsSocket.once("close", () => {
      if (!handshakeDone) fail(new ATLSError("handshake", "TLS handshake failed: the server closed the connection"));
    });
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    tlsSocket.once("secureConnect", () => {
      handshakeDone = true;
      verifyPeer(tlsSocket, nonce.bytes, options).then(
        ({ verdict, certificate }) => {
          if (settled) return;
          settled = true;
          options.signal?.removeEventListener("abort", onAbort);
          resolve({ socket: tlsSocket, verdict, certificate });
        },
        (err: unknown) => fail(toATLSError(err)),
      );
    });
  });
}

function toATLSError(err: unknown): ATLSError {
  if (err instanceof ATLSError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ATLSError("policy", `refused by policy: ${msg}`, { cause: err });
}

/** verifyPeer runs the client-side checks of DESIGN.md in order and throws the first failure. */
async function verifyPeer(
  socket: TLSSocket,
  nonce: Buffer,
  options: HandshakeOptions,
): Promise<{ verdict: Verdict; certificate: AttestedCertificate }> {
  const peer = socket.getPeerX509Certificate();
  if (!peer) throw new ATLSError("certificate", "the server sent no certificate");
  const info: CertificateInfo = inspectCertificate(peer.raw, (options.now ?? Date.now)());
  const { validator, document } = findAttestation(info, options.validators);

  let verdict: Verdict;
  try {
    verdict = await validator.validate(document, { nonce, userData: info.userData, requireFresh: options.requireFresh ?? false });
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    throw new ATLSError("validator", `${validator.platform} validator failed: ${msg}`, { cause });
  }
  if (!verdict.ok) {
    const failed = verdict.checks.find((c) => c.status === "failed");
    if (failed) throw new ATLSError(failed.name, `${verdict.platform} ${failed.name}: ${failed.detail ?? "failed"}`, { verdict });
    throw new ATLSError("validator", `${verdict.platform}: no check passed (${verdict.checks.map((c) => `${c.name} ${c.status}`).join(", ") || "no checks"})`, { verdict });
  }
  if (options.requireH2 && socket.alpnProtocol !== "h2") {
    throw new ATLSError("alpn", `the server did not negotiate ALPN h2 (got ${socket.alpnProtocol || "none"})`);
  }

  const certificate: AttestedCertificate = {
    pem: toPEM(info.der, "CERTIFICATE"),
    subject: info.subject,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    userData: info.userData.toString("hex"),
    platform: validator.platform,
    oid: validator.oid,
    document,
  };
  options.onVerified?.(verdict, certificate);
  return { verdict, certificate };
}
