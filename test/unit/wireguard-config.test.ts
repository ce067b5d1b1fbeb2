import { describe, expect, it } from "vitest";
import { renderWgConfig, renderWgQuickConfig } from "../../src/wireguard/config.js";
import { WireGuardError } from "../../src/wireguard/errors.js";

const key = (n: number) => Buffer.alloc(32, n).toString("base64");

describe("renderWgQuickConfig", () => {
  it("renders the admin's wg0.conf (golden)", () => {
    const got = renderWgQuickConfig({
      privKey: key(1),
      address: "10.118.0.11",
      listenPort: 51820,
      peers: [
        { pubKey: key(2), allowedIPs: ["10.118.0.1/32"], endpoint: "192.0.2.10:51820", persistentKeepaliveSec: 25, comment: "coordinator 192.0.2.10" },
        { pubKey: key(3), allowedIPs: ["10.118.0.12/32"], endpoint: "[2001:db8::0:1]:51821" },
        { pubKey: key(4), allowedIPs: ["10.118.0.13/32", "fd00::13/128"] },
      ],
    });
    expect(got).toBe(`[Interface]
PrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=
Address = 10.118.0.11/16
ListenPort = 51820

# coordinator 192.0.2.10
[Peer]
PublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=
AllowedIPs = 10.118.0.1/32
Endpoint = 192.0.2.10:51820
PersistentKeepalive = 25

[Peer]
PublicKey = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=
AllowedIPs = 10.118.0.12/32
Endpoint = [2001:db8::1]:51821

[Peer]
PublicKey = BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=
AllowedIPs = 10.118.0.13/32, fd00::13/128
`);
  });

  it("omits ListenPort when not given and honours prefixLength", () => {
    expect(renderWgQuickConfig({ privKey: key(1), address: "10.118.0.11", prefixLength: 24, peers: [] })).toBe(
      "[Interface]\nPrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAddress = 10.118.0.11/24\n",
    );
  });

  const bad: Array<{ name: string; cfg: Parameters<typeof renderWgQuickConfig>[0]; message: RegExp }> = [
    { name: "bad private key", cfg: { privKey: "no pe!", address: "10.118.0.11", peers: [] }, message: /^privKey: is not valid base64/ },
    { name: "bad address", cfg: { privKey: key(1), address: "10.118.0", peers: [] }, message: /^address: not an IP address/ },
    { name: "bad peer key", cfg: { privKey: key(1), address: "10.118.0.11", peers: [{ pubKey: key(1).slice(4), allowedIPs: [] }] }, message: /^peers\[0\]\.pubKey: must decode to 32 bytes/ },
    { name: "newline in a comment", cfg: { privKey: key(1), address: "10.118.0.11", peers: [{ pubKey: key(2), allowedIPs: [], comment: "x\nPrivateKey = y" }] }, message: /^peers\[0\]\.comment: must be a single line/ },
    { name: "injected allowed IP", cfg: { privKey: key(1), address: "10.118.0.11", peers: [{ pubKey: key(2), allowedIPs: ["10.0.0.1/32\n[Peer]"] }] }, message: /^peers\[0\]\.allowedIPs\[0\]: not a CIDR prefix/ },
  ];
  for (const tc of bad) {
    it(`rejects ${tc.name}, naming the field and not the private key`, () => {
      expect(() => renderWgQuickConfig(tc.cfg)).toThrow(WireGuardError);
      expect(() => renderWgQuickConfig(tc.cfg)).toThrow(tc.message);
    });
  }
});

describe("renderWgConfig (wg setconf/syncconf input)", () => {
  it("renders peers with explicit keepalive and no wg-quick keys", () => {
    const got = renderWgConfig({
      listenPort: 51820,
      peers: [
        { pubKey: key(2), allowedIPs: ["10.118.0.1/32"], endpoint: "198.18.0.2:51820", persistentKeepaliveSec: 25 },
        { pubKey: key(3), allowedIPs: ["10.118.0.12/32"], persistentKeepaliveSec: 0 },
      ],
    });
    expect(got).toBe(`[Interface]
ListenPort = 51820

[Peer]
PublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=
AllowedIPs = 10.118.0.1/32
Endpoint = 198.18.0.2:51820
PersistentKeepalive = 25

[Peer]
PublicKey = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=
AllowedIPs = 10.118.0.12/32
PersistentKeepalive = off
`);
    expect(got).not.toMatch(/Address|PrivateKey/);
  });
});
