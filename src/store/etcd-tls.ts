/**
 * Transport security of the etcd store: the store holds the master secret, so it never crosses a
 * network in plaintext. TLS (with client certificates for etcd's --client-cert-auth) is required
 * unless every endpoint is loopback.
 */
import { isIP } from "node:net";
import type { IOptions } from "etcd3";
import { FailedPreconditionError, InvalidArgumentError } from "../core/errors.js";

/** EtcdCredentials is etcd3's credentials option. */
export type EtcdCredentials = IOptions["credentials"];

/**
 * EtcdTLS are PEM contents (not paths) for TLS to etcd: `ca` verifies etcd's server certificate;
 * `cert` and `key` (both or neither) are this Coordinator's client certificate for etcd's
 * --client-cert-auth. Never log them (`key` is secret).
 */
export interface EtcdTLS {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** isLoopbackHost says whether an etcd endpoint's host is loopback: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/** endpointHost returns the host of "HOST:PORT", "[V6]:PORT" or "scheme://HOST:PORT". */
function endpointHost(endpoint: string): string {
  const rest = endpoint.replace(/^[a-z]+:\/\//i, "");
  const v6 = /^\[([^\]]+)\]/.exec(rest);
  if (v6) return v6[1];
  const i = rest.lastIndexOf(":");
  return i >= 0 && rest.indexOf(":") === i ? rest.slice(0, i) : rest;
}

/**
 * checkEtcdTransport throws unless the endpoints may be used as configured: a client certificate
 * needs its key and vice versa; a remote endpoint needs TLS with a client certificate (an etcd that
 * does not demand one would hand the master secret to anyone who reaches it); plaintext and
 * server-only TLS are for loopback endpoints.
 */
export function checkEtcdTransport(endpoints: readonly string[], tls: EtcdTLS | undefined): void {
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) throw new InvalidArgumentError("etcd store: tls: a client certificate needs its key, and a key its certificate");
  const remote = endpoints.filter((e) => !isLoopbackHost(endpointHost(e)));
  if (tls && tls.cert === undefined && remote.length > 0) {
    throw new FailedPreconditionError(
      `etcd store: refusing TLS without a client certificate to ${remote.join(", ")}: the store holds the master secret, so etcd must run with --client-cert-auth; give --etcd-cert and --etcd-key`,
    );
  }
  if (tls) return;
  if (remote.length > 0) {
    throw new FailedPreconditionError(
      `etcd store: refusing plaintext to ${remote.join(", ")}: the store holds the master secret; use TLS with client certificates (--etcd-ca, --etcd-cert, --etcd-key) or a loopback endpoint`,
    );
  }
}

/** credentialsOf turns EtcdTLS into etcd3's credentials option. */
export function credentialsOf(tls: EtcdTLS | undefined): EtcdCredentials {
  if (!tls) return undefined;
  return { rootCertificate: tls.ca, ...(tls.key ? { privateKey: tls.key } : {}), ...(tls.cert ? { certChain: tls.cert } : {}) };
}

