import { describe, expect, it } from "vitest";
import type { PeerDiff } from "../../src/wireguard/diff.js";
import { WireGuardError } from "../../src/wireguard/errors.js";
import { publicKeyOf } from "../../src/wireguard/keys.js";
import { decodeGet, decodeReply, diffToPeerChanges, encodeSet, getRequest, UAPIError } from "../../src/wireguard/uapi.js";

const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const hex = (n: number) => Buffer.alloc(32, n).toString("hex");

// A reply as wireguard-go v0.0.20220316 printed it (captured on this project's test machine).
const sampleGet = `private_key=${"48".repeat(32)}
listen_port=51999
public_key=${hex(0x11)}
preshared_key=${"00".repeat(32)}
protocol_version=1
endpoint=1.2.3.4:5
last_handshake_time_sec=1700000000
last_handshake_time_nsec=12
tx_bytes=148
rx_bytes=92
persistent_keepalive_interval=25
allowed_ip=10.118.0.2/32
public_key=${hex(0x22)}
preshared_key=${"00".repeat(32)}
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
allowed_ip=10.118.0.3/32
allowed_ip=fd00::3/128
public_key=${hex(0x33)}
endpoint=[fd00::1]:51820
persistent_keepalive_interval=0
errno=0

`;

describe("UAPI encoding", () => {
  it("get request", () => {
    expect(getRequest).toBe("get=1\n\n");
  });

  it("encodes device settings and peer changes in protocol order", () => {
    const got = encodeSet({
      privateKey: new Uint8Array(32).fill(0x48),
      listenPort: 51820,
      peers: [
        { pubKey: key(1), remove: true, endpoint: "ignored" },
        { pubKey: key(2), replaceAllowedIPs: true, allowedIPs: ["10.118.0.2/32"], endpoint: "198.18.0.2:51820", persistentKeepaliveSec: 25 },
        { pubKey: key(3), allowedIPs: ["FD00:0::3/128"], endpoint: "[fd00::0:1]:1" },
      ],
    });
    expect(got).toBe(
      [
        "set=1",
        `private_key=${"48".repeat(32)}`,
        "listen_port=51820",
        `public_key=${hex(1)}`,
        "remove=true",
        `public_key=${hex(2)}`,
        "endpoint=198.18.0.2:51820",
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        "allowed_ip=10.118.0.2/32",
        `public_key=${hex(3)}`,
        "endpoint=[fd00::1]:1",
        "allowed_ip=fd00::3/128",
        "",
        "",
      ].join("\n"),
    );
  });

  const injections: Array<{ name: string; req: Parameters<typeof encodeSet>[0]; message: RegExp }> = [
    { name: "a newline in an endpoint", req: { peers: [{ pubKey: key(1), endpoint: "1.2.3.4:5\nremove=true" }] }, message: /^peers\[0\]\.endpoint: not an endpoint/ },
    { name: "a newline in an allowed IP", req: { peers: [{ pubKey: key(1), allowedIPs: ["10.0.0.1/32\nreplace_peers=true"] }] }, message: /^peers\[0\]\.allowedIPs\[0\]: not a CIDR/ },
    { name: "a bad key", req: { peers: [{ pubKey: "x" }] }, message: /^peers\[0\]\.pubKey:/ },
    { name: "a listen port out of range", req: { listenPort: 70000 }, message: /^listenPort: must be an integer port 0-65535/ },
    { name: "a short private key", req: { privateKey: new Uint8Array(31) }, message: /^privateKey: must be 32 bytes$/ },
  ];
  for (const tc of injections) {
    it(`refuses ${tc.name}`, () => {
      expect(() => encodeSet(tc.req)).toThrow(WireGuardError);
      expect(() => encodeSet(tc.req)).toThrow(tc.message);
    });
  }

  it("turns a diff into one batch: removals (incl. rotated keys) first, then full peers", () => {
    const p = (n: number, ip: string) => ({ pubKey: key(n), allowedIPs: [`${ip}/32`], persistentKeepaliveSec: 25 });
    const diff: PeerDiff = {
      remove: [p(1, "10.118.0.1")],
      add: [{ ...p(2, "10.118.0.2"), endpoint: "198.18.0.2:51820" }],
      update: [p(3, "10.118.0.3")],
      keyRotations: [{ vpnIP: "10.118.0.4", oldPubKey: key(4), peer: p(5, "10.118.0.4") }],
    };
    const changes = diffToPeerChanges(diff);
    expect(changes.map((c) => [c.pubKey, c.remove ?? false])).toEqual([
      [key(1), true],
      [key(4), true],
      [key(5), false],
      [key(2), false],
      [key(3), false],
    ]);
    expect(changes[3]).toEqual({ pubKey: key(2), replaceAllowedIPs: true, allowedIPs: ["10.118.0.2/32"], persistentKeepaliveSec: 25, endpoint: "198.18.0.2:51820" });
    expect(changes[4]).not.toHaveProperty("endpoint");
  });
});

describe("UAPI decoding", () => {
  it("decodes a get reply; the private key is reduced to its public key", () => {
    const st = decodeGet(sampleGet);
    expect(st.publicKey).toBe(publicKeyOf(key(0x48)));
    expect(st.listenPort).toBe(51999);
    expect(st.peers).toEqual([
      { pubKey: key(0x11), allowedIPs: ["10.118.0.2/32"], endpoint: "1.2.3.4:5", persistentKeepaliveSec: 25, lastHandshakeSec: 1700000000, rxBytes: 92, txBytes: 148 },
      { pubKey: key(0x22), allowedIPs: ["10.118.0.3/32", "fd00::3/128"], persistentKeepaliveSec: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 },
      { pubKey: key(0x33), allowedIPs: [], endpoint: "[fd00::1]:51820", persistentKeepaliveSec: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 },
    ]);
    expect(JSON.stringify(st)).not.toContain("4848");
  });

  it("decodes an empty device", () => {
    expect(decodeGet("listen_port=0\nerrno=0\n\n")).toEqual({ listenPort: 0, fwmark: 0, peers: [] });
  });

  it("turns errno≠0 into a UAPIError carrying the errno", () => {
    expect(() => decodeReply("errno=-22\n\n", "set")).toThrow(UAPIError);
    try {
      decodeReply("errno=-22\n\n", "set");
    } catch (err) {
      expect((err as UAPIError).errno).toBe(-22);
      expect((err as Error).message).toBe("UAPI set: device answered errno=-22 (EINVAL: invalid value)");
    }
    expect(decodeReply("errno=0\n\n", "set")).toEqual([]);
  });

  const malformed = ["", "listen_port=1\n\n", "garbage\nerrno=0\n\n", "errno=x\n\n", `public_key=zz\nerrno=0\n\n`, "listen_port=-1\nerrno=0\n\n"];
  for (const text of malformed) {
    it(`rejects a malformed reply ${JSON.stringify(text.slice(0, 20))}`, () => {
      expect(() => decodeGet(text)).toThrow(WireGuardError);
    });
  }
});
