import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PeerConfig } from "../../src/wireguard/diff.js";
import { WireGuardError } from "../../src/wireguard/errors.js";
import { generateKeyPair } from "../../src/wireguard/keys.js";
import { parseWgShowDump } from "../../src/wireguard/vpn-kernel.js";
import { peerConfigFromSpec } from "../../src/wireguard/vpn-device.js";
import { UserspaceVPN, type UserspaceVPNOptions } from "../../src/wireguard/vpn-userspace.js";
import { detectBackend, type WireGuardPeerSpec } from "../../src/wireguard/vpn.js";
import { canRunE2E, NetnsHarness, type NetnsNode } from "../helpers/netns.js";

const reason = canRunE2E();

/** PoisonedVPN appends an invalid peer to its next `set=1`, so the real wireguard-go applies part of the batch and fails. */
class PoisonedVPN extends UserspaceVPN {
  poisonNext = false;
  sets = 0;
  protected override async sendSet(request: string): Promise<void> {
    this.sets++;
    if (this.poisonNext) {
      this.poisonNext = false;
      request = request.replace(/\n\n$/, `\npublic_key=${randomBytes(32).toString("hex")}\nendpoint=not-an-endpoint\n\n`);
    }
    await super.sendSet(request);
  }
}

/** randomPeers makes n peers with random 32-byte keys (any 32 bytes are a valid public key to WireGuard). */
function randomPeers(n: number, firstHost = 1000): WireGuardPeerSpec[] {
  return Array.from({ length: n }, (_, i) => {
    const h = firstHost + i;
    return { pubKey: randomBytes(32).toString("base64"), publicIP: `198.18.${1 + (h >> 8)}.${h & 255}`, vpnIP: `10.118.${h >> 8}.${h & 255}`, port: 51820 };
  });
}

/** expectedRows renders peers the way `wg show dump` reports them (key, endpoint, allowed IPs, keepalive). */
function expectedRows(peers: readonly WireGuardPeerSpec[]): string[] {
  return peers.map((p) => `${p.pubKey} ${p.publicIP}:${p.port ?? 51820} ${p.vpnIP}/32 25`).sort();
}

describe.skipIf(reason !== undefined)(`wireguard userspace backend e2e (root, namespaces, wireguard-go)${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let net: NetnsHarness;
  let dir: string;
  const vpns: UserspaceVPN[] = [];

  beforeAll(async () => {
    net = NetnsHarness.create();
    dir = await mkdtemp(join(tmpdir(), "am-wge2e-"));
  });
  afterAll(async () => {
    for (const v of vpns) await v.close().catch(() => undefined);
    net?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function open<T extends UserspaceVPN = UserspaceVPN>(node: NetnsNode, extra: Partial<UserspaceVPNOptions> = {}, Ctor: new (o: UserspaceVPNOptions) => T = UserspaceVPN as never): Promise<T> {
    const iface = net.interfaceName();
    const vpn = new Ctor({ interfaceName: iface, privateKeyFile: join(dir, `${iface}.key`), netns: node.name, ...extra });
    vpns.push(vpn);
    await vpn.start();
    return vpn;
  }

  async function wgShow(node: NetnsNode, vpn: UserspaceVPN): Promise<string[]> {
    const { stdout } = await net.exec(node.name, "wg", ["show", vpn.interfaceName, "dump"]);
    return parseWgShowDump(stdout)
      .peers.map((p) => `${p.pubKey} ${p.endpoint ?? "(none)"} ${p.allowedIPs.join(",")} ${p.persistentKeepaliveSec}`)
      .sort();
  }

  it("two namespaces ping each other through the tunnel", async () => {
    const a = net.addNode();
    const b = net.addNode();
    const va = await open(a);
    const vb = await open(b);
    await va.setInterfaceIP("10.118.0.1");
    await vb.setInterfaceIP("10.118.0.11");
    await va.updatePeers([{ pubKey: await vb.getPublicKey(), publicIP: b.ip, vpnIP: "10.118.0.11" }]);
    await vb.updatePeers([{ pubKey: await va.getPublicKey(), publicIP: a.ip, vpnIP: "10.118.0.1" }]);

    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) ok = (await net.exec(a.name, "ping", ["-c", "1", "-W", "1", "10.118.0.11"], { reject: false })).exitCode === 0;
    expect(ok, "ping 10.118.0.11 from the first namespace through WireGuard").toBe(true);
    const back = await net.exec(b.name, "ping", ["-c", "3", "-i", "0.2", "-W", "1", "10.118.0.1"], { reject: false });
    expect(back.exitCode, back.stdout).toBe(0);

    const [peer] = await va.listPeers();
    expect(peer.lastHandshakeSec).toBeGreaterThan(0);
    expect(peer.rxBytes).toBeGreaterThan(0);
    const addr = await net.exec(a.name, "ip", ["-o", "address", "show", "dev", va.interfaceName]);
    expect(addr.stdout).toContain("10.118.0.1/16");
    // Setting the same IP again is idempotent; a new one replaces the old.
    await va.setInterfaceIP("10.118.0.1");
    await va.setInterfaceIP("10.118.0.2");
    const addr2 = await net.exec(a.name, "ip", ["-o", "-4", "address", "show", "dev", va.interfaceName]);
    expect(addr2.stdout).toContain("10.118.0.2/16");
    expect(addr2.stdout).not.toContain("10.118.0.1/16");
  });

  it("applies a one-peer change to a 1,000-peer device and `wg show` agrees", async () => {
    const node = net.addNode();
    const vpn = await open(node);
    const peers = randomPeers(1000);
    await vpn.updatePeers(peers);
    expect(await wgShow(node, vpn)).toEqual(expectedRows(peers));

    const rotated = { ...peers[2], pubKey: generateKeyPair().pubKey };
    const changed = [...peers.slice(1, 2), rotated, { ...peers[3], publicIP: "198.18.9.9" }, ...peers.slice(4), ...randomPeers(1, 3000)];
    const diff = await vpn.applyPeers(changed.map(toConfig));
    expect({ remove: diff.remove.length, add: diff.add.length, update: diff.update.length, rotate: diff.keyRotations.length }).toEqual({ remove: 1, add: 1, update: 1, rotate: 1 });
    expect(await wgShow(node, vpn)).toEqual(expectedRows(changed));

    const noop = await vpn.applyPeers(changed.map(toConfig));
    expect(noop).toEqual({ remove: [], add: [], update: [], keyRotations: [] });
  });

  it("refuses a peer set with an invalid peer and keeps the previous peers", async () => {
    const node = net.addNode();
    const vpn = await open(node);
    const peers = randomPeers(5);
    await vpn.updatePeers(peers);
    const bad: WireGuardPeerSpec[][] = [
      [...peers, { ...peers[0], pubKey: generateKeyPair().pubKey }], // duplicate VPN IP
      [...peers.slice(1), { ...peers[0], pubKey: "AAAA" }],
      [...peers.slice(1), { ...peers[0], vpnIP: "10.118.0.256" }],
    ];
    for (const set of bad) {
      await expect(vpn.updatePeers(set)).rejects.toMatchObject({ code: "invalid-argument" });
      expect(await wgShow(node, vpn)).toEqual(expectedRows(peers));
    }
  });

  it("a device failure half-way through a batch leaves the previous peers (restored and verified)", async () => {
    const node = net.addNode();
    const vpn = await open(node, {}, PoisonedVPN);
    const peers = randomPeers(50);
    await vpn.updatePeers(peers);
    const before = await wgShow(node, vpn);
    vpn.poisonNext = true;
    vpn.sets = 0;
    const err = await vpn.updatePeers([...peers.slice(10), ...randomPeers(20, 2000)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireGuardError);
    expect((err as WireGuardError).code).toBe("apply-failed");
    expect((err as Error).message).toMatch(/errno=-22.*restored and verified the previous 50 peers/);
    expect(vpn.sets).toBe(2); // the poisoned batch (partly applied by wireguard-go), then the restore
    expect(await wgShow(node, vpn)).toEqual(before);
  });

  it("keeps its identity across a restart with the same key file", async () => {
    const node = net.addNode();
    const iface = net.interfaceName();
    const opts = { interfaceName: iface, privateKeyFile: join(dir, `${iface}.key`), netns: node.name };
    const first = new UserspaceVPN(opts);
    vpns.push(first);
    await first.start();
    const pub = await first.getPublicKey();
    await first.close();
    const second = new UserspaceVPN(opts);
    vpns.push(second);
    await second.start();
    expect(await second.getPublicKey()).toBe(pub);
    const dump = await net.exec(node.name, "wg", ["show", iface, "public-key"]);
    expect(dump.stdout.trim()).toBe(pub);
  });

  it("a wireguard-go an earlier owner left running with the same key is stopped and started clean (crash-only restart)", async () => {
    const node = net.addNode();
    const iface = net.interfaceName();
    const opts = { interfaceName: iface, privateKeyFile: join(dir, `${iface}.key`), netns: node.name };
    const orphaned = new UserspaceVPN(opts); // its owner "dies": never closed
    vpns.push(orphaned);
    await orphaned.start();
    const oldPid = orphaned.pid!;
    const pub = await orphaned.getPublicKey();
    const restarted = new UserspaceVPN(opts);
    vpns.push(restarted);
    await restarted.start();
    expect(restarted.pid).not.toBe(oldPid);
    expect(() => process.kill(oldPid, 0)).toThrow();
    expect((await net.exec(node.name, "wg", ["show", iface, "public-key"])).stdout.trim()).toBe(pub);
  });

  it("errors name the cause: wireguard-go missing, not root, interface busy, device gone", async () => {
    const node = net.addNode();
    const missing = await open(node, { wireguardGoPath: "/nonexistent/wireguard-go" }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: "tool-missing" });
    expect((missing as Error).message).toMatch(/wireguard-go not found at \/nonexistent\/wireguard-go/);

    const script = join(dir, "wireguard-go-as-nobody");
    await writeFile(script, '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups wireguard-go "$@"\n');
    await chmod(script, 0o755);
    const notRoot = await open(node, { wireguardGoPath: script }).catch((e: unknown) => e);
    expect(notRoot).toMatchObject({ code: "permission-denied" });
    expect((notRoot as Error).message).toMatch(/needs root \(CAP_NET_ADMIN\)/);

    const running = await open(node);
    const twin = new UserspaceVPN({ interfaceName: running.interfaceName, privateKeyFile: join(dir, "twin.key"), netns: net.addNode().name });
    await expect(twin.start()).rejects.toMatchObject({ code: "busy" });

    process.kill(running.pid!, "SIGKILL");
    let err: unknown;
    for (let i = 0; i < 100 && !err; i++) {
      err = await running.listPeers().then(() => undefined, (e: unknown) => e);
      if (!err) await new Promise((r) => setTimeout(r, 20));
    }
    expect(err).toMatchObject({ code: "interface-missing" });
    expect((err as Error).message).toMatch(/wireguard-go exited/);
  });

  it("detects the backend: kernel only where `ip link add … type wireguard` works", async () => {
    const node = net.addNode();
    const iface = net.interfaceName();
    const backend = await detectBackend({ interfaceName: iface, netns: node.name });
    const probe = await net.exec(node.name, "ip", ["link", "add", `${iface}p`, "type", "wireguard"], { reject: false });
    expect(backend).toBe(probe.exitCode === 0 ? "kernel" : "userspace");
    const links = await net.exec(node.name, "ip", ["-o", "link", "show"]);
    expect(links.stdout).not.toContain(`${iface}:`);
  });
});

function toConfig(p: WireGuardPeerSpec, i: number): PeerConfig {
  return peerConfigFromSpec(p, 25, `peers[${i}]`);
}
