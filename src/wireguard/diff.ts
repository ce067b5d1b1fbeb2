import { canonicalCIDR, canonicalEndpoint } from "./addr.js";
import { invalidArgument } from "./errors.js";
import { checkKey } from "./keys.js";

/**
 * PeerConfig is one WireGuard peer as the device holds it: the unit diffPeers compares. Peers the
 * mesh makes have exactly one allowed IP, their VPN IP as a host prefix (/32 or /128).
 */
export interface PeerConfig {
  /** pubKey is the peer's public key, base64. */
  pubKey: string;
  /** allowedIPs are canonical CIDR prefixes ("10.118.0.5/32"); order does not matter. */
  allowedIPs: readonly string[];
  /**
   * endpoint is "ip:port" or "[ipv6]:port". In a wanted peer, undefined means "not managed": the
   * device keeps whatever endpoint it learned (admins roam). In a device's peer, undefined means none.
   */
  endpoint?: string;
  /** persistentKeepaliveSec is the keepalive interval in seconds; 0 turns it off. */
  persistentKeepaliveSec: number;
}

/** KeyRotation is a VPN IP whose peer changed its public key: the old peer goes, the new one comes. */
export interface KeyRotation {
  /** vpnIP is the address the two peers share (their allowed IPs, comma-joined, without /32). */
  vpnIP: string;
  /** oldPubKey is the key that leaves the device. */
  oldPubKey: string;
  /** peer is the new peer, fully configured. */
  peer: PeerConfig;
}

/**
 * PeerDiff is what must change on a device to get from its current peers to the wanted ones.
 * The four lists are disjoint: a rotated key is in keyRotations only (not in remove or add).
 */
export interface PeerDiff {
  /** remove are current peers whose key is not wanted (and whose VPN IP was not taken by a rotation). */
  remove: PeerConfig[];
  /** add are wanted peers with a new key and a VPN IP no current peer had. */
  add: PeerConfig[];
  /** update are wanted peers whose key exists but whose endpoint, allowed IPs or keepalive differ. */
  update: PeerConfig[];
  /** keyRotations are wanted peers replacing a current peer with the same VPN IP but another key. */
  keyRotations: KeyRotation[];
}

/** isEmptyDiff reports whether a diff changes nothing; an empty diff must cause no device write. */
export function isEmptyDiff(diff: PeerDiff): boolean {
  return diff.remove.length + diff.add.length + diff.update.length + diff.keyRotations.length === 0;
}

/** diffSummary counts a diff's entries, for log lines. */
export function diffSummary(diff: PeerDiff): { remove: number; add: number; update: number; rotate: number } {
  return { remove: diff.remove.length, add: diff.add.length, update: diff.update.length, rotate: diff.keyRotations.length };
}

/**
 * normalizePeerSet validates a wanted peer set and returns canonical copies. It throws a
 * WireGuardError ("invalid-argument") naming `field` and the offending index when a key, prefix,
 * endpoint or keepalive is malformed, when a public key appears twice, or when an allowed IP
 * (a VPN IP) is given to two peers. Nothing is applied when it throws.
 */
export function normalizePeerSet(peers: readonly PeerConfig[], field = "peers"): PeerConfig[] {
  const out = peers.map((p, i) => {
    const f = `${field}[${i}]`;
    const pubKey = checkKey(p.pubKey, `${f}.pubKey`);
    if (!Array.isArray(p.allowedIPs)) throw invalidArgument(`${f}.allowedIPs`, "must be a list of CIDR prefixes");
    const allowedIPs = p.allowedIPs.map((c, j) => canonicalCIDR(c, `${f}.allowedIPs[${j}]`));
    const k = p.persistentKeepaliveSec;
    if (!Number.isInteger(k) || k < 0 || k > 65535) {
      throw invalidArgument(`${f}.persistentKeepaliveSec`, `must be an integer 0-65535, got ${String(k)}`);
    }
    const peer: PeerConfig = { pubKey, allowedIPs, persistentKeepaliveSec: k };
    if (p.endpoint !== undefined) peer.endpoint = canonicalEndpoint(p.endpoint, `${f}.endpoint`);
    return peer;
  });
  checkUnique(out, field);
  return out;
}

/**
 * checkUnique throws a WireGuardError ("invalid-argument") naming `field` and the index when a
 * public key appears twice or an allowed IP (a VPN IP) is given to two peers. It expects canonical
 * peers (as normalizePeerSet or peerConfigFromSpec return them).
 */
export function checkUnique(peers: readonly PeerConfig[], field = "peers"): void {
  const byKey = new Map<string, number>();
  const byIP = new Map<string, number>();
  peers.forEach((p, i) => {
    const prev = byKey.get(p.pubKey);
    if (prev !== undefined) throw invalidArgument(`${field}[${i}].pubKey`, `duplicate public key ${p.pubKey} (also ${field}[${prev}])`);
    byKey.set(p.pubKey, i);
    for (const ip of p.allowedIPs) {
      const other = byIP.get(ip);
      if (other !== undefined && other !== i) {
        throw invalidArgument(`${field}[${i}].vpnIP`, `duplicate VPN IP ${stripHost(ip)} (also ${field}[${other}] ${peers[other].pubKey})`);
      }
      byIP.set(ip, i);
    }
  });
}

/**
 * diffPeers computes the change from `current` (a device's peers) to `wanted`, matching peers by
 * public key and, for key rotations, by VPN IP. It validates `wanted` first (normalizePeerSet)
 * and throws before anything could be applied. `current` is trusted as read from the device.
 * Pure; lists keep the input order (remove: current order; others: wanted order).
 */
export function diffPeers(current: readonly PeerConfig[], wanted: readonly PeerConfig[]): PeerDiff {
  return diffNormalized(current, normalizePeerSet(wanted, "peers"));
}

/**
 * diffNormalized is diffPeers for a wanted set that normalizePeerSet (or equivalent checks)
 * already returned: canonical, unique keys and VPN IPs. It skips the validation.
 */
export function diffNormalized(current: readonly PeerConfig[], want: readonly PeerConfig[]): PeerDiff {
  const wantedKeys = new Set(want.map((p) => p.pubKey));
  const curByKey = new Map(current.map((p) => [p.pubKey, p]));
  const leaving = new Map<string, PeerConfig>(); // allowed-IP set → current peer whose key is not wanted
  for (const c of current) if (!wantedKeys.has(c.pubKey) && c.allowedIPs.length > 0) leaving.set(ipSetKey(c.allowedIPs), c);

  const diff: PeerDiff = { remove: [], add: [], update: [], keyRotations: [] };
  const rotated = new Set<string>();
  for (const w of want) {
    const c = curByKey.get(w.pubKey);
    if (c) {
      if (!samePeer(c, w)) diff.update.push(w);
      continue;
    }
    const old = w.allowedIPs.length > 0 ? leaving.get(ipSetKey(w.allowedIPs)) : undefined;
    if (old && !rotated.has(old.pubKey)) {
      rotated.add(old.pubKey);
      diff.keyRotations.push({ vpnIP: w.allowedIPs.map(stripHost).join(","), oldPubKey: old.pubKey, peer: w });
    } else {
      diff.add.push(w);
    }
  }
  for (const c of current) if (!wantedKeys.has(c.pubKey) && !rotated.has(c.pubKey)) diff.remove.push(c);
  return diff;
}

/** samePeer reports whether device peer `c` already is wanted peer `w` (endpoint only if w manages it). */
export function samePeer(c: PeerConfig, w: PeerConfig): boolean {
  if (c.persistentKeepaliveSec !== w.persistentKeepaliveSec) return false;
  if (w.endpoint !== undefined && c.endpoint !== w.endpoint) return false;
  return ipSetKey(c.allowedIPs) === ipSetKey(w.allowedIPs);
}

function ipSetKey(ips: readonly string[]): string {
  return ips.length === 1 ? ips[0] : [...ips].sort().join(",");
}

function stripHost(cidr: string): string {
  return cidr.replace(/\/(32|128)$/, "");
}
