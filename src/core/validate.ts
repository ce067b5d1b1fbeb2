import { isIPv4, isIPv6 } from "node:net";
import { wgKeyPattern } from "../shared/shapes.js";
import { InvalidArgumentError } from "./errors.js";

/** checkIP throws InvalidArgumentError naming `field` unless ip is a literal IPv4 or IPv6 address. */
export function checkIP(ip: unknown, field: string): string {
  if (typeof ip !== "string" || !(isIPv4(ip) || isIPv6(ip))) {
    throw new InvalidArgumentError(`${field}: not an IP address: ${quote(ip)}`);
  }
  return ip;
}

const hostnamePattern = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Endpoint is a host (IP or hostname) with a port. */
export interface Endpoint {
  host: string;
  port: number;
}

/**
 * parseEndpoint parses "HOST:PORT" or "[IPv6]:PORT" and throws InvalidArgumentError naming `field`
 * when it is malformed. When `defaultPort` is given, a bare host is accepted.
 */
export function parseEndpoint(value: unknown, field: string, defaultPort?: number): Endpoint {
  if (typeof value !== "string" || value.length === 0 || value.length > 300) {
    throw new InvalidArgumentError(`${field}: not an endpoint (HOST:PORT): ${quote(value)}`);
  }
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (!isIPv6(host)) throw new InvalidArgumentError(`${field}: not an IPv6 address in brackets: ${quote(value)}`);
  } else {
    const i = value.lastIndexOf(":");
    if (i >= 0 && value.indexOf(":") !== i) {
      throw new InvalidArgumentError(`${field}: write IPv6 endpoints as [ADDR]:PORT: ${quote(value)}`);
    }
    host = i >= 0 ? value.slice(0, i) : value;
    portText = i >= 0 ? value.slice(i + 1) : undefined;
    if (!isIPv4(host) && !hostnamePattern.test(host)) {
      throw new InvalidArgumentError(`${field}: not an IP address or hostname: ${quote(value)}`);
    }
    if (/^[0-9.]+$/.test(host) && !isIPv4(host)) {
      throw new InvalidArgumentError(`${field}: not an IPv4 address: ${quote(value)}`);
    }
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new InvalidArgumentError(`${field}: missing port (HOST:PORT): ${quote(value)}`);
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
      throw new InvalidArgumentError(`${field}: port must be 1-65535: ${quote(value)}`);
    }
  }
  return { host, port };
}

/** formatEndpoint renders an Endpoint as HOST:PORT, bracketing IPv6. */
export function formatEndpoint(e: Endpoint): string {
  return isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** wgKeyBytes is the length of a WireGuard (Curve25519) key. */
export const wgKeyBytes = 32;

/** checkWGKey throws unless key is the 44-character base64 of 32 bytes, as `wg pubkey` prints. */
export function checkWGKey(key: unknown, field: string): string {
  if (typeof key !== "string" || !wgKeyPattern.test(key)) {
    const len = typeof key === "string" ? key.length : 0;
    throw new InvalidArgumentError(`${field}: must be a base64 WireGuard key of 32 bytes (44 characters), got ${len} characters`);
  }
  return key;
}

/** checkBytes throws unless b has exactly `len` bytes. */
export function checkBytes(b: Uint8Array | undefined, len: number, field: string): Uint8Array {
  if (!b || b.length !== len) throw new InvalidArgumentError(`${field}: must be ${len} bytes, got ${b?.length ?? 0}`);
  return b;
}

function quote(v: unknown): string {
  const s = typeof v === "string" ? v : String(v);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
