import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";

import { ServerCredentials } from "@grpc/grpc-js";

import type { Issuer } from "../attestation/attestation.js";
import { nullLogger, type Logger } from "../shared/logger.js";
import { createAttestedCertificate, defaultValidityMs } from "./certificate.js";
import { ATLSConnections } from "./connections.js";
import { ATLSError } from "./errors.js";
import { HandshakeLimiter } from "./limiter.js";
import { nonceFromServername, nonceServernameRule } from "./nonce.js";

/** ATLSServerOptions configure createATLSServerCredentials. */
export interface ATLSServerOptions {
  /** logger receives one line per refused or failed handshake; undefined: nothing is logged. */
  logger?: Logger;
  /** validityMs is how long each served certificate stays valid; undefined: 10 minutes. */
  validityMs?: number;
  /** now returns ms since the epoch, stamped into certificates; undefined: Date.now (tests shift it). */
  now?: () => number;
  /** limiter bounds concurrent and queued issuer calls (limiter.ts); undefined: a HandshakeLimiter with its defaults. */
  limiter?: HandshakeLimiter;
  /**
   * onHandshake runs once per ClientHello: "served" when a certificate was made, else "refused" with
   * the check that refused it ("sni nonce", "busy", "attest"). For metrics; it must not throw.
   */
  onHandshake?: (result: "served" | "refused", check?: string) => void;
}

/**
 * ATLSServerCredentials are grpc-js server credentials that answer every TLS ClientHello with a
 * fresh attested certificate (see createATLSServerCredentials). Equal only to themselves.
 */
export class ATLSServerCredentials extends ServerCredentials {
  /**
   * connections are the live connections of servers bound with these credentials, so handlers can
   * bind caller proofs to the call's own connection (see ATLSConnections).
   */
  readonly connections: ATLSConnections;

  constructor(issuer: Issuer, options: ATLSServerOptions = {}) {
    const log = (options.logger ?? nullLogger).child("atls");
    const now = options.now ?? Date.now;
    const validityMs = options.validityMs ?? defaultValidityMs;
    if (!(validityMs > 0)) throw new RangeError(`aTLS server: validityMs must be positive, got ${validityMs}`);

    const connections = new ATLSConnections();
    const limiter = options.limiter ?? new HandshakeLimiter();
    const counted = options.onHandshake ?? ((): void => {});
    // Node calls the SNI callback as a method of the server-side TLSSocket: that is the one place
    // the credentials see each connection (grpc-js keeps its http2 server to itself). The limiter
    // caps handshakes per source by its remoteAddress; caller proofs find the connection later.
    const SNICallback = function (this: unknown, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
      const nonce = nonceFromServername(servername);
      if (!nonce) {
        // Scanners and plain TLS clients end here; debug keeps them from flooding the log.
        log.debug(`refused ClientHello: server name is not ${nonceServernameRule}`, { servername: servername.slice(0, 80) });
        counted("refused", "sni nonce");
        cb(new Error(`aTLS: the TLS server name must be ${nonceServernameRule}`));
        return;
      }
      if (this instanceof TLSSocket) connections.add(this);
      else log.warn("aTLS: the SNI callback did not run on a TLS socket; caller proofs on this connection will be refused");
      limiter
        .run(this instanceof TLSSocket ? this.remoteAddress : undefined, () => createAttestedCertificate(issuer, nonce, { validityMs, now: now() }))
        .then((pair) => createSecureContext({ key: pair.keyPem, cert: pair.certPem }))
        .then(
          (ctx) => {
            counted("served");
            cb(null, ctx);
          },
          (err: unknown) => {
            if (err instanceof ATLSError && err.check === "busy") {
              counted("refused", "busy");
              log.debug("refused ClientHello: busy", { error: err.message });
              cb(err);
              return;
            }
            counted("refused", "attest");
            log.warn("aTLS handshake refused: could not attest the certificate key", {
              platform: issuer.platform,
              error: err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ""}` : String(err),
            });
            cb(err instanceof Error ? err : new Error(String(err)));
          },
        );
    };
    // No default certificate: a ClientHello without SNI finds none and the handshake fails.
    // The empty context options tell grpc-js the credentials are loaded.
    super({ SNICallback, minVersion: "TLSv1.3" }, {});
    this.connections = connections;
  }

  override _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

/**
 * createATLSServerCredentials returns server credentials for `grpc.Server.bindAsync`. For each TLS
 * connection the server reads the client's nonce from the SNI server name (exactly two labels of 32
 * lower-case hex characters, else the handshake fails without a certificate), makes a fresh P-256 key, asks `issuer`
 * for a document binding the nonce and SHA-256 of the key's SPKI, and serves a self-signed
 * certificate carrying it under `issuer.oid`. TLS 1.3 only; TLS does not authenticate clients:
 * callers prove themselves per call through `connections` (caller proofs).
 * The issuer is called once per handshake, at most options.limiter's bound at once; past the bounds
 * a handshake fails at once ("busy").
 */
export function createATLSServerCredentials(issuer: Issuer, options?: ATLSServerOptions): ATLSServerCredentials {
  return new ATLSServerCredentials(issuer, options);
}
