/**
 * Encoding and decoding of the cross-platform WireGuard configuration protocol
 * (https://www.wireguard.com/xplatform/): `get=1` / `set=1` requests of key=value lines ending in
 * an empty line, keys in hex, and an `errno=N` reply. Pure: the socket lives in uapi-client.ts.
 */
import { canonicalCIDR, canonicalEndpoint, checkPort } from "./addr.js";
import type { PeerConfig, PeerDiff } from "./diff.js";
import { WireGuardError } from "./errors.js";
import { encodeKey, hexToKey, keyLength, keyToHex, publicKeyBytes } from "./keys.js";

/** DevicePeer is a peer as a device reports it: its configuration plus live counters. */
export interface DevicePeer extends PeerConfig {
  /** lastHandshakeSec is the Unix time of the last handshake in seconds; 0 means never. */
  lastHandshakeSec: number;
  rxBytes: number;
  txBytes: number;
}

/** DeviceState is a device's configuration as `get=1` (or `wg show dump`) reports it. */
export interface DeviceState {
  /** publicKey is derived from the device's private key; undefined when none is set. */
  publicKey?: string;
  /** listenPort is the UDP port the device listens on; 0 when not listening. */
  listenPort: number;
  fwmark: number;
  peers: DevicePeer[];
}

/** UAPIPeerChange is one peer's part of a `set=1` request. */
export interface UAPIPeerChange {
  pubKey: string;
  /** remove deletes the peer; every other field is then ignored. */
  remove?: boolean;
  /** replaceAllowedIPs drops the peer's allowed IPs before adding `allowedIPs`. */
  replaceAllowedIPs?: boolean;
  allowedIPs?: readonly string[];
  endpoint?: string;
  persistentKeepaliveSec?: number;
}

/** UAPISetRequest is one `set=1` operation; fields left undefined are not touched. */
export interface UAPISetRequest {
  /** privateKey is 32 raw bytes; it is written to the socket only, never logged. */
  privateKey?: Uint8Array;
  /** listenPort 0 lets the device pick a port. */
  listenPort?: number;
  replacePeers?: boolean;
  peers?: readonly UAPIPeerChange[];
}

/** UAPIError is a device's non-zero `errno` reply (negative errno values, e.g. -22 for EINVAL). */
export class UAPIError extends WireGuardError {
  /** errno is the value of the reply's errno line. */
  readonly errno: number;
  constructor(operation: string, errno: number) {
    super("internal", `UAPI ${operation}: device answered errno=${errno} (${errnoName(errno)})`, { retryable: false });
    this.errno = errno;
  }
}

/** getRequest is the complete `get=1` request. */
export const getRequest = "get=1\n\n";

/**
 * encodeSet renders a `set=1` request, ending with the empty line. Every value is validated
 * (hex keys, canonical prefixes and endpoints, ranges) so no line can smuggle another in.
 */
export function encodeSet(req: UAPISetRequest): string {
  const lines = ["set=1"];
  if (req.privateKey !== undefined) {
    if (req.privateKey.length !== keyLength) throw new WireGuardError("invalid-argument", `privateKey: must be ${keyLength} bytes`);
    lines.push(`private_key=${Buffer.from(req.privateKey).toString("hex")}`);
  }
  if (req.listenPort !== undefined) lines.push(`listen_port=${checkPort(req.listenPort, "listenPort", true)}`);
  if (req.replacePeers) lines.push("replace_peers=true");
  (req.peers ?? []).forEach((p, i) => {
    const f = `peers[${i}]`;
    lines.push(`public_key=${keyToHex(p.pubKey, `${f}.pubKey`)}`);
    if (p.remove) {
      lines.push("remove=true");
      return;
    }
    if (p.endpoint !== undefined) lines.push(`endpoint=${canonicalEndpoint(p.endpoint, `${f}.endpoint`)}`);
    if (p.persistentKeepaliveSec !== undefined) {
      lines.push(`persistent_keepalive_interval=${checkPort(p.persistentKeepaliveSec, `${f}.persistentKeepaliveSec`, true)}`);
    }
    if (p.replaceAllowedIPs) lines.push("replace_allowed_ips=true");
    (p.allowedIPs ?? []).forEach((c, j) => lines.push(`allowed_ip=${canonicalCIDR(c, `${f}.allowedIPs[${j}]`)}`));
  });
  return `${lines.join("\n")}\n\n`;
}

/**
 * diffToPeerChanges turns a PeerDiff into the peer part of one `set=1` batch: removals first
 * (including rotated-out keys), then new and changed peers, each written in full with
 * replace_allowed_ips=true so the result does not depend on what the device held before.
 */
export function diffToPeerChanges(diff: PeerDiff): UAPIPeerChange[] {
  const full = (p: PeerConfig): UAPIPeerChange => ({
    pubKey: p.pubKey,
    replaceAllowedIPs: true,
    allowedIPs: p.allowedIPs,
    persistentKeepaliveSec: p.persistentKeepaliveSec,
    ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}),
  });
  return [
    ...diff.remove.map((p) => ({ pubKey: p.pubKey, remove: true })),
    ...diff.keyRotations.map((r) => ({ pubKey: r.oldPubKey, remove: true })),
    ...diff.keyRotations.map((r) => full(r.peer)),
    ...diff.add.map(full),
    ...diff.update.map(full),
  ];
}

/**
 * decodeReply parses a reply of key=value lines ending in `errno=N` and returns the lines before it.
 * It throws UAPIError when errno is not 0 and a WireGuardError("internal") when malformed.
 */
export function decodeReply(text: string, operation: string): Array<[string, string]> {
  const lines = text.split("\n");
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const pairs: Array<[string, string]> = [];
  for (const line of lines) {
    const i = line.indexOf("=");
    if (i <= 0) throw new WireGuardError("internal", `UAPI ${operation}: malformed reply line ${JSON.stringify(line.slice(0, 80))}`);
    pairs.push([line.slice(0, i), line.slice(i + 1)]);
  }
  const last = pairs.pop();
  if (!last || last[0] !== "errno" || !/^-?\d+$/.test(last[1])) {
    throw new WireGuardError("internal", `UAPI ${operation}: reply does not end with errno=N`);
  }
  const errno = Number(last[1]);
  if (errno !== 0) throw new UAPIError(operation, errno);
  return pairs;
}

/** decodeGet parses the reply to `get=1` into a DeviceState (the private key is reduced to its public key). */
export function decodeGet(text: string): DeviceState {
  const state: DeviceState = { listenPort: 0, fwmark: 0, peers: [] };
  let peer: (Omit<DevicePeer, "allowedIPs"> & { allowedIPs: string[] }) | undefined;
  for (const [key, value] of decodeReply(text, "get")) {
    if (key === "public_key") {
      peer = { pubKey: hexToKey(value, "public_key"), allowedIPs: [], persistentKeepaliveSec: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 };
      state.peers.push(peer);
      continue;
    }
    if (!peer) {
      if (key === "private_key") state.publicKey = encodeKey(publicKeyBytes(Buffer.from(hexToKey(value, key), "base64")));
      else if (key === "listen_port") state.listenPort = int(value, key);
      else if (key === "fwmark") state.fwmark = int(value, key);
      continue;
    }
    // Hot path on 1,000-peer devices: the IPv4 forms wireguard-go prints are already canonical.
    if (key === "endpoint") peer.endpoint = ipv4Endpoint.test(value) ? value : canonicalEndpoint(value, "endpoint");
    else if (key === "allowed_ip") peer.allowedIPs.push(ipv4Host.test(value) ? value : canonicalCIDR(value, "allowed_ip"));
    else if (key === "persistent_keepalive_interval") peer.persistentKeepaliveSec = int(value, key);
    else if (key === "last_handshake_time_sec") peer.lastHandshakeSec = int(value, key);
    else if (key === "rx_bytes") peer.rxBytes = int(value, key);
    else if (key === "tx_bytes") peer.txBytes = int(value, key);
    // preshared_key, protocol_version, last_handshake_time_nsec and future keys are not needed.
  }
  return state;
}

/** errnoName names the negative errno values wireguard-go answers with. */
export function errnoName(errno: number): string {
  const names: Record<number, string> = { [-5]: "EIO: I/O error", [-22]: "EINVAL: invalid value", [-71]: "EPROTO: protocol error", [-98]: "EADDRINUSE: listen port in use", [-55]: "unknown UAPI error" };
  return names[errno] ?? "error";
}

const octet = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const ipv4 = `${octet}\\.${octet}\\.${octet}\\.${octet}`;
const ipv4Endpoint = new RegExp(`^${ipv4}:(?:6553[0-5]|655[0-2]\\d|65[0-4]\\d\\d|6[0-4]\\d{3}|[1-5]\\d{4}|[1-9]\\d{0,3})$`);
const ipv4Host = new RegExp(`^${ipv4}/32$`);

function int(value: string, key: string): number {
  if (!/^\d+$/.test(value)) throw new WireGuardError("internal", `UAPI get: ${key} is not a number: ${JSON.stringify(value.slice(0, 40))}`);
  return Number(value);
}
