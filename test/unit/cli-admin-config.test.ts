// meshctl admin-config and add-nodes --out (issue 13): the admin's wg0.conf follows the mesh. The
// wg-quick parser reads back what we render, refuses keys a rewrite would drop, and never echoes a
// private key; admin-config rewrites the peers from a real vpnapi (loopback gRPC) and keeps the
// admin's [Interface].
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { adminWGPeers, mergeAdminWGConfig } from "../../src/cli/admin-config.js";
import { main } from "../../src/cli/meshctl.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { parseWgQuickConfig, renderWgQuickConfig } from "../../src/wireguard/config.js";
import { generateKeyPair } from "../../src/wireguard/keys.js";
import { startFakeVPNAPI, type FakeVPNAPI } from "../helpers/fake-vpnapi.js";

const admin = generateKeyPair();
const key = (): string => generateKeyPair().pubKey;
const coordinator: PeerRecord = { role: "coordinator", publicIP: "198.18.0.2", vpnIP: "10.118.0.1", vpnPubKey: key(), wgPort: 51820, pubapiPort: 9000 };
const node = (i: number): PeerRecord => ({ role: "node", publicIP: `198.18.0.${10 + i}`, vpnIP: `10.118.1.${i}`, vpnPubKey: key(), wgPort: 51820, pubapiPort: 9000 });
const adminRecord: PeerRecord = { role: "admin", publicIP: "", vpnIP: "10.118.1.100", vpnPubKey: admin.pubKey, wgPort: 0, pubapiPort: 0 };

let dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  dirs = [];
});

async function adminDir(peers: PeerRecord[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "am-admin-config-"));
  dirs.push(dir);
  await writeFile(join(dir, "wg0.conf"), renderWgQuickConfig({ privKey: admin.privKey, address: adminRecord.vpnIP, listenPort: 51999, peers: adminWGPeers(peers) }), { mode: 0o600 });
  await writeFile(join(dir, "admin.json"), JSON.stringify({ ownerId: "a".repeat(64), clusterId: "b".repeat(64), coordinatorVPNIP: "127.0.0.1", coordinatorEndpoints: [] }));
  return dir;
}

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("wg-quick parser", () => {
  it("reads back what renderWgQuickConfig writes, comments included", () => {
    const cfg = { privKey: admin.privKey, address: "10.118.1.100", prefixLength: 16, listenPort: 51999, peers: adminWGPeers([coordinator, node(1)]) };
    expect(parseWgQuickConfig(renderWgQuickConfig(cfg))).toEqual(cfg);
  });

  const bad: Array<[string, string, RegExp]> = [
    ["no PrivateKey", "[Interface]\nAddress = 10.118.1.100/16\n", /\[Interface\]: no PrivateKey/],
    ["a short private key", `[Interface]\nPrivateKey = ${admin.privKey.slice(0, 40)}\nAddress = 10.118.1.100/16\n`, /line 2 PrivateKey: must decode to 32 bytes/],
    ["a key a rewrite would drop", `[Interface]\nPrivateKey = ${admin.privKey}\nAddress = 10.118.1.100/16\nDNS = 1.1.1.1\n`, /line 4: \[Interface\] DNS is not a key meshctl keeps/],
    ["a peer without PublicKey", `[Interface]\nPrivateKey = ${admin.privKey}\nAddress = 10.118.1.100/16\n\n[Peer]\nAllowedIPs = 10.118.0.1/32\n`, /a \[Peer\] section has no PublicKey/],
    ["a bad AllowedIPs", `[Interface]\nPrivateKey = ${admin.privKey}\nAddress = 10.118.1.100/16\n[Peer]\nPublicKey = ${key()}\nAllowedIPs = 10.118.0.1/33\n`, /line 6 AllowedIPs: prefix length 33 too long/],
    ["garbage", "hello\n", /line 1: expected KEY = VALUE/],
  ];
  for (const [name, text, want] of bad) {
    it(`refuses ${name}, naming the line and never the private key`, () => {
      let msg = "";
      try {
        parseWgQuickConfig(text);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(want);
      expect(msg).not.toContain(admin.privKey.slice(0, 40));
    });
  }
});

describe("meshctl admin-config", () => {
  let server: FakeVPNAPI | undefined;
  afterEach(() => server?.close());

  async function vpnapi(peers: PeerRecord[]): Promise<string> {
    server = await startFakeVPNAPI(peers);
    return server.endpoint;
  }

  it("rewrites the peers from the current peer set: added Nodes appear, removed ones go, the admin's [Interface] stays; mode 0600", async () => {
    const [n1, n2, n3] = [node(1), node(2), node(3)];
    const dir = await adminDir([coordinator, n1, n2]);
    const endpoint = await vpnapi([coordinator, adminRecord, n1, n3]);
    const r = await run("admin-config", "--out", dir, "--vpn-endpoint", endpoint);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toBe(`wrote ${join(dir, "wg0.conf")}: 3 peer(s), 1 added, 1 removed (run 'wg syncconf' or 'wg-quick down/up' to apply)`);
    const cfg = parseWgQuickConfig(await readFile(join(dir, "wg0.conf"), "utf8"));
    expect(cfg).toMatchObject({ privKey: admin.privKey, address: adminRecord.vpnIP, listenPort: 51999 });
    expect(cfg.peers.map((p) => p.allowedIPs[0])).toEqual(["10.118.0.1/32", "10.118.1.1/32", "10.118.1.3/32"]);
    expect(cfg.peers.map((p) => p.pubKey)).not.toContain(admin.pubKey);
    expect((await stat(join(dir, "wg0.conf"))).mode & 0o777).toBe(0o600);
  });

  it("asks the Coordinator VPN IP from admin.json by default; an unreachable vpnapi leaves wg0.conf as it was", async () => {
    const dir = await adminDir([coordinator]);
    const before = await readFile(join(dir, "wg0.conf"), "utf8");
    // admin.json names 127.0.0.1: nothing listens on port 9027 there in this test.
    const r = await run("admin-config", "--out", dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/127\.0\.0\.1:9027/);
    expect(await readFile(join(dir, "wg0.conf"), "utf8")).toBe(before);
  }, 30_000);

  it("a missing or unparsable wg0.conf is named before anything is asked", async () => {
    const dir = await mkdtemp(join(tmpdir(), "am-admin-config-"));
    dirs.push(dir);
    let r = await run("admin-config", "--out", dir, "--vpn-endpoint", "127.0.0.1:1");
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(dir, "wg0.conf")}: cannot read (ENOENT); it is written by meshctl activate`);
    await writeFile(join(dir, "wg0.conf"), "[Interface]\nMTU = 1400\n");
    r = await run("admin-config", "--out", dir, "--vpn-endpoint", "127.0.0.1:1");
    expect(r.err).toContain(`${join(dir, "wg0.conf")}: line 2: [Interface] MTU is not a key meshctl keeps`);
  });

  it("add-nodes --out merges activated Nodes into wg0.conf and keeps every other peer (mergeAdminWGConfig)", async () => {
    const [n1, n2] = [node(1), node(2)];
    const dir = await adminDir([coordinator, n1]);
    const moved = { ...n1, publicIP: "198.18.0.99" };
    const change = await mergeAdminWGConfig(dir, [n2, moved]);
    expect(change).toEqual({ peers: 3, added: 1, removed: 0 });
    const cfg = parseWgQuickConfig(await readFile(join(dir, "wg0.conf"), "utf8"));
    expect(cfg.peers.map((p) => p.endpoint).sort()).toEqual(["198.18.0.12:51820", "198.18.0.2:51820", "198.18.0.99:51820"]);
  });
});
