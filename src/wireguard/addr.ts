import { isIPv4, isIPv6 } from "node:net";
import { invalidArgument } from "./errors.js";

/**
 * canonicalIP returns the canonical text of a literal IP address (IPv6 compressed, lower-case, as
 * wireguard-go and `wg` print it) and throws a WireGuardError naming `field` for anything else.
 * Zone IDs (`fe80::1%eth0`) are refused: WireGuard endpoints cannot carry them.
 */
export function canonicalIP(ip: unknown, field: string): string {
  if (typeof ip !== "string" || ip.includes("%")) throw invalidArgument(field, `not an IP address: ${show(ip)}`);
  if (isIPv4(ip)) return ip;
  if (isIPv6(ip)) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  throw invalidArgument(field, `not an IP address: ${show(ip)}`);
}

/** hostPrefix returns "<ip>/32" for IPv4 and "<ip>/128" for IPv6 (a peer's single allowed IP). */
export function hostPrefix(ip: string, field: string): string {
  const c = canonicalIP(ip, field);
  return isIPv4(c) ? `${c}/32` : `${c}/128`;
}

/** canonicalCIDR checks "<ip>/<bits>" and returns it with the address in canonical form. */
export function canonicalCIDR(cidr: unknown, field: string): string {
  if (typeof cidr !== "string") throw invalidArgument(field, `not a CIDR prefix: ${show(cidr)}`);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m) throw invalidArgument(field, `not a CIDR prefix (ADDR/BITS): ${show(cidr)}`);
  const ip = canonicalIP(m[1], field);
  const bits = Number(m[2]);
  if (bits > (isIPv4(ip) ? 32 : 128)) throw invalidArgument(field, `prefix length ${bits} too long: ${show(cidr)}`);
  return `${ip}/${bits}`;
}

/** formatEndpoint renders ip:port, bracketing IPv6 ("[fd00::1]:51820"), after checking both. */
export function formatEndpoint(ip: string, port: number, field: string): string {
  const c = canonicalIP(ip, `${field} ip`);
  checkPort(port, `${field} port`);
  return isIPv6(c) ? `[${c}]:${port}` : `${c}:${port}`;
}

/** canonicalEndpoint checks "ip:port" / "[ipv6]:port" (no hostnames) and returns its canonical form. */
export function canonicalEndpoint(endpoint: unknown, field: string): string {
  if (typeof endpoint !== "string") throw invalidArgument(field, `not an endpoint (IP:PORT): ${show(endpoint)}`);
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(endpoint) ?? /^([^:[\]]+):(\d{1,5})$/.exec(endpoint);
  if (!m) throw invalidArgument(field, `not an endpoint (IP:PORT or [IPv6]:PORT): ${show(endpoint)}`);
  return formatEndpoint(m[1], Number(m[2]), field);
}

/** checkPort throws a WireGuardError naming `field` unless port is an integer in 1..65535. */
export function checkPort(port: unknown, field: string, allowZero = false): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw invalidArgument(field, `must be an integer port ${allowZero ? 0 : 1}-65535, got ${show(port)}`);
  }
  return port;
}

function show(v: unknown): string {
  const s = typeof v === "string" ? v : String(v);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
