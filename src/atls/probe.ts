import { connect as netConnect, isIPv6, type Socket } from "node:net";

import type { Validator, Verdict } from "../attestation/attestation.js";
import { ATLSError } from "./errors.js";
import { attestedHandshake, type AttestedCertificate } from "./handshake.js";

export type { AttestedCertificate } from "./handshake.js";

/** ProbeOptions configure probeEndpoint. */
export interface ProbeOptions {
  /** timeoutMs bounds connecting, the handshake and validation together; undefined: 10 000 ms. */
  timeoutMs?: number;
  /** requireFresh makes validators demand an uninitialized peer; undefined: false. */
  requireFresh?: boolean;
}

/** ProbeResult is the verified evidence of one endpoint. */
export interface ProbeResult {
  verdict: Verdict;
  certificate: AttestedCertificate;
}

/**
 * probeEndpoint makes one aTLS handshake with `host:port` over plain TLS (no gRPC), verifies the
 * server exactly as the gRPC client credentials do, closes the connection and returns the verdict
 * and certificate (for `meshctl verify`). Rejects with an ATLSError whose `check` is "connect"
 * (refused, unreachable, unknown host), "timeout", "handshake", or the verification check that failed.
 */
export async function probeEndpoint(host: string, port: number, validators: readonly Validator[], options?: ProbeOptions): Promise<ProbeResult> {
  if (validators.length === 0) throw new RangeError("aTLS probe: at least one validator is required");
  const timeoutMs = options?.timeoutMs ?? 10_000;
  const endpoint = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ATLSError("timeout", `no aTLS handshake with ${endpoint} within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    const socket = await tcpConnect(host, port, endpoint, controller.signal);
    const conn = await attestedHandshake(socket, { validators, requireFresh: options?.requireFresh ?? false, signal: controller.signal });
    conn.socket.destroy();
    return { verdict: conn.verdict, certificate: conn.certificate };
  } finally {
    clearTimeout(timer);
  }
}

function tcpConnect(host: string, port: number, endpoint: string, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    const onAbort = (): void => {
      socket.destroy();
      reject(signal.reason);
    };
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      signal.removeEventListener("abort", onAbort);
      reject(new ATLSError("connect", `connect to ${endpoint}: ${describeConnectError(err)}`, { cause: err }));
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

function describeConnectError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "ECONNREFUSED":
      return "connection refused (is meshd listening there?)";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "unknown host";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    default:
      return err.message;
  }
}
