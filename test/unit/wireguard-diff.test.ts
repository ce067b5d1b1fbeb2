import { describe, expect, it } from "vitest";
import { diffPeers, isEmptyDiff, normalizePeerSet, type PeerConfig, type PeerDiff } from "../../src/wireguard/diff.js";
import { WireGuardError } from "../../src/wireguard/errors.js";

// Fixed keys: 32 bytes of one repeated value, base64.
const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const peer = (n: number, ip: string, endpoint?: string, keepalive = 25): PeerConfig => ({
  pubKey: key(n),
  allowedIPs: [`${ip}/32`],
  persistentKeepaliveSec: keepalive,
  ...(endpoint !== undefined ? { endpoint } : {}),
});
const A = peer(1, "10.118.0.1", "198.18.0.2:51820");
const B = peer(2, "10.118.0.11", "198.18.0.3:51820");
const C = peer(3, "10.118.0.12", "198.18.0.4:51820");
const none: PeerDiff = { remove: [], add: [], update: [], keyRotations: [] };

const cases: Array<{ name: string; current: PeerConfig[]; wanted: PeerConfig[]; want: PeerDiff }> = [
  { name: "no-op: same peers", current: [A, B], wanted: [B, A], want: none },
  { name: "no-op: empty", current: [], wanted: [], want: none },
  { name: "add to an empty device", current: [], wanted: [A], want: { ...none, add: [A] } },
  { name: "add one peer", current: [A, B], wanted: [A, B, C], want: { ...none, add: [C] } },
  { name: "remove one peer", current: [A, B, C], wanted: [A, C], want: { ...none, remove: [B] } },
  { name: "remove all", current: [A, B], wanted: [], want: { ...none, remove: [A, B] } },
  {
    name: "key rotation: same VPN IP, new key",
    current: [A, B],
    wanted: [A, { ...B, pubKey: key(9) }],
    want: { ...none, keyRotations: [{ vpnIP: "10.118.0.11", oldPubKey: B.pubKey, peer: { ...B, pubKey: key(9) } }] },
  },
  {
    name: "endpoint change",
    current: [A, B],
    wanted: [A, { ...B, endpoint: "198.18.0.9:51821" }],
    want: { ...none, update: [{ ...B, endpoint: "198.18.0.9:51821" }] },
  },
  {
    name: "a learned endpoint is kept when the wanted peer has none (admin)",
    current: [{ ...B, endpoint: "203.0.113.7:40000" }],
    wanted: [{ pubKey: B.pubKey, allowedIPs: B.allowedIPs, persistentKeepaliveSec: 25 }],
    want: none,
  },
  { name: "keepalive change", current: [A], wanted: [{ ...A, persistentKeepaliveSec: 0 }], want: { ...none, update: [{ ...A, persistentKeepaliveSec: 0 }] } },
  { name: "VPN IP change of a known key", current: [A], wanted: [{ ...A, allowedIPs: ["10.118.0.2/32"] }], want: { ...none, update: [{ ...A, allowedIPs: ["10.118.0.2/32"] }] } },
  {
    name: "a peer the device holds without allowed IPs is updated",
    current: [{ ...A, allowedIPs: [] }],
    wanted: [A],
    want: { ...none, update: [A] },
  },
  {
    name: "everything at once",
    current: [A, B, C],
    wanted: [{ ...A, endpoint: "198.18.0.20:51820" }, { ...C, pubKey: key(7) }, peer(4, "10.118.0.13")],
    want: {
      remove: [B],
      add: [peer(4, "10.118.0.13")],
      update: [{ ...A, endpoint: "198.18.0.20:51820" }],
      keyRotations: [{ vpnIP: "10.118.0.12", oldPubKey: C.pubKey, peer: { ...C, pubKey: key(7) } }],
    },
  },
  {
    name: "IPv6 prefixes and endpoints compare canonically",
    current: [{ pubKey: key(5), allowedIPs: ["fd00::5/128"], endpoint: "[fd00::1]:51820", persistentKeepaliveSec: 25 }],
    wanted: [{ pubKey: key(5), allowedIPs: ["FD00:0::5/128"], endpoint: "[fd00:0:0::1]:51820", persistentKeepaliveSec: 25 }],
    want: none,
  },
];

describe("diffPeers", () => {
  for (const tc of cases) {
    it(tc.name, () => {
      const got = diffPeers(tc.current, tc.wanted);
      expect(got).toEqual(tc.want);
      expect(isEmptyDiff(got)).toBe(isEmptyDiff(tc.want));
    });
  }

  const invalid: Array<{ name: string; wanted: PeerConfig[]; message: RegExp }> = [
    { name: "duplicate VPN IP", wanted: [A, { ...B, allowedIPs: A.allowedIPs }], message: /^peers\[1\]\.vpnIP: duplicate VPN IP 10\.118\.0\.1 \(also peers\[0\]/ },
    { name: "duplicate public key", wanted: [A, B, { ...C, pubKey: A.pubKey }], message: /^peers\[2\]\.pubKey: duplicate public key .* \(also peers\[0\]\)$/ },
    { name: "bad key", wanted: [A, { ...B, pubKey: "short" }], message: /^peers\[1\]\.pubKey: is not valid base64/ },
    { name: "bad VPN IP", wanted: [{ ...A, allowedIPs: ["10.118.0.300/32"] }], message: /^peers\[0\]\.allowedIPs\[0\]: not an IP address/ },
    { name: "hostname endpoint", wanted: [{ ...A, endpoint: "example.com:51820" }], message: /^peers\[0\]\.endpoint ip: not an IP address/ },
    { name: "endpoint without port", wanted: [{ ...A, endpoint: "198.18.0.2" }], message: /^peers\[0\]\.endpoint: not an endpoint/ },
    { name: "keepalive out of range", wanted: [{ ...A, persistentKeepaliveSec: 70000 }], message: /^peers\[0\]\.persistentKeepaliveSec: must be an integer 0-65535/ },
  ];
  for (const tc of invalid) {
    it(`rejects the wanted set: ${tc.name}`, () => {
      expect(() => diffPeers([A], tc.wanted)).toThrow(WireGuardError);
      expect(() => diffPeers([A], tc.wanted)).toThrow(tc.message);
    });
  }

  it("normalizePeerSet returns canonical copies and leaves the input alone", () => {
    const input = [{ pubKey: ` ${key(5)}`, allowedIPs: ["fd00:0::5/128"], persistentKeepaliveSec: 1 }];
    expect(normalizePeerSet(input)).toEqual([{ pubKey: key(5), allowedIPs: ["fd00::5/128"], persistentKeepaliveSec: 1 }]);
    expect(input[0].allowedIPs[0]).toBe("fd00:0::5/128");
  });
});
