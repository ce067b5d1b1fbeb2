import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import type { VPN } from "../../src/core/vpn.js";
import type { PeerConfig, PeerDiff } from "../../src/wireguard/diff.js";
import { WireGuardError } from "../../src/wireguard/errors.js";
import { generateKeyPair, publicKeyOf } from "../../src/wireguard/keys.js";
import { diffToPeerChanges, type DeviceState } from "../../src/wireguard/uapi.js";
import { peerConfigFromSpec, WireGuardVPN } from "../../src/wireguard/vpn-device.js";
import type { KernelVPN } from "../../src/wireguard/vpn-kernel.js";
import type { UserspaceVPN } from "../../src/wireguard/vpn-userspace.js";
import type { WireGuardOptions, WireGuardPeerSpec } from "../../src/wireguard/vpn.js";

/**
 * FakeDeviceVPN is a WireGuardVPN whose "device" is a map, applying a batch change by change the
 * way wireguard-go does (so a fault injected after N changes leaves a partial apply behind).
 */
class FakeDeviceVPN extends WireGuardVPN {
  device = new Map<string, PeerConfig>();
  devicePublicKey: string | undefined;
  writes = 0;
  reads = 0;
  active = 0;
  maxActive = 0;
  /** faults[i] makes write i (from now) fail after applying that many changes; undefined: no fault. */
  faults: Array<number | undefined> = [];

  protected override async createDevice(privateKey: Uint8Array): Promise<void> {
    this.devicePublicKey = publicKeyOf(Buffer.from(privateKey).toString("base64"));
  }
  protected override async readDevice(): Promise<DeviceState> {
    this.reads++;
    return {
      listenPort: this.options.listenPort,
      fwmark: 0,
      peers: [...this.device.values()].map((p) => ({ ...p, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 })),
      ...(this.devicePublicKey ? { publicKey: this.devicePublicKey } : {}),
    };
  }
  protected override async writePeers(diff: PeerDiff, _wanted: readonly PeerConfig[]): Promise<void> {
    this.writes++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await new Promise((r) => setTimeout(r, 2));
      const changes = diffToPeerChanges(diff);
      const failAt = this.faults.shift();
      changes.forEach((c, i) => {
        if (failAt !== undefined && i >= failAt) throw new WireGuardError("internal", "UAPI set: device answered errno=-22 (EINVAL: invalid value)");
        if (c.remove) {
          this.device.delete(c.pubKey);
          return;
        }
        const old = this.device.get(c.pubKey) ?? { pubKey: c.pubKey, allowedIPs: [], persistentKeepaliveSec: 0 };
        const ips = c.allowedIPs ?? [];
        for (const other of this.device.values()) other.allowedIPs = other.allowedIPs.filter((x) => !ips.includes(x));
        this.device.set(c.pubKey, {
          pubKey: c.pubKey,
          allowedIPs: c.replaceAllowedIPs ? [...ips] : [...old.allowedIPs, ...ips],
          persistentKeepaliveSec: c.persistentKeepaliveSec ?? old.persistentKeepaliveSec,
          ...(c.endpoint ?? old.endpoint ? { endpoint: c.endpoint ?? old.endpoint } : {}),
        });
      });
    } finally {
      this.active--;
    }
  }
  protected override async destroyDevice(): Promise<void> {
    this.device.clear();
  }
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function options(): Promise<WireGuardOptions> {
  const d = await mkdtemp(join(tmpdir(), "am-wgvpn-"));
  dirs.push(d);
  return { interfaceName: "wgtest0", privateKeyFile: join(d, "wg.key") };
}
const spec = (n: number, publicIP = `198.18.0.${n + 1}`): WireGuardPeerSpec => ({
  pubKey: Buffer.alloc(32, n).toString("base64"),
  publicIP,
  vpnIP: `10.118.0.${n + 10}`,
});
const devicePeers = (vpn: FakeDeviceVPN) => [...vpn.device.values()].map((p) => `${p.pubKey.slice(0, 4)} ${p.allowedIPs.join(",")} ${p.endpoint ?? "-"}`).sort();

describe("WireGuardVPN (shared base, on a fake device)", () => {
  let vpn: FakeDeviceVPN;
  beforeEach(async () => {
    vpn = new FakeDeviceVPN(await options());
    await vpn.start();
  });

  it("satisfies the core's VPN interface (compile-time) and the backends do too", () => {
    expectTypeOf<FakeDeviceVPN>().toExtend<VPN>();
    expectTypeOf<UserspaceVPN>().toExtend<VPN>();
    expectTypeOf<KernelVPN>().toExtend<VPN>();
    expectTypeOf<WireGuardPeerSpec>().toEqualTypeOf<import("../../src/core/vpn.js").VPNPeer>();
  });

  it("keeps its identity in the key file: the public key matches and survives a restart", async () => {
    const opts = await options();
    const a = new FakeDeviceVPN(opts);
    await a.start();
    const file = (await readFile(opts.privateKeyFile, "utf8")).trim();
    expect(await a.getPublicKey()).toBe(publicKeyOf(file));
    const first = await a.getPublicKey();
    await a.close();
    const b = new FakeDeviceVPN(opts);
    await b.start();
    expect(await b.getPublicKey()).toBe(first);
  });

  it("applies a change and writes nothing when called again with the same peers", async () => {
    await vpn.updatePeers([spec(1), spec(2)]);
    expect(vpn.writes).toBe(1);
    expect(devicePeers(vpn)).toHaveLength(2);
    await vpn.updatePeers([spec(2), spec(1)]);
    expect(vpn.writes).toBe(1);
    const diff = await vpn.applyPeers([spec(1), spec(2)].map((p, i) => peerConfigFromSpec(p, 25, `peers[${i}]`)));
    expect(diff).toEqual({ remove: [], add: [], update: [], keyRotations: [] });
    expect(vpn.writes).toBe(1);
  });

  const invalid: Array<{ name: string; peers: () => Promise<WireGuardPeerSpec[]>; message: RegExp }> = [
    { name: "a duplicate VPN IP", peers: async () => [spec(1), { ...spec(3), vpnIP: spec(1).vpnIP }], message: /^peers\[1\]\.vpnIP: duplicate VPN IP 10\.118\.0\.11/ },
    { name: "a duplicate key", peers: async () => [spec(1), { ...spec(3), pubKey: spec(1).pubKey }], message: /^peers\[1\]\.pubKey: duplicate public key/ },
    { name: "a malformed key", peers: async () => [spec(1), { ...spec(3), pubKey: "AAAA" }], message: /^peers\[1\]\.pubKey: must decode to 32 bytes, got 3$/ },
    { name: "a hostname as public IP", peers: async () => [{ ...spec(3), publicIP: "node.example" }], message: /^peers\[0\]\.endpoint ip: not an IP address/ },
    { name: "a bad port", peers: async () => [{ ...spec(3), port: 0 }], message: /^peers\[0\]\.endpoint port: must be an integer port 1-65535/ },
    { name: "the device's own key", peers: async () => [spec(1), { ...spec(3), pubKey: await vpn.getPublicKey() }], message: /^peers\[1\]\.pubKey: is this device's own public key/ },
  ];
  for (const tc of invalid) {
    it(`refuses a peer set with ${tc.name}: clear error, nothing applied`, async () => {
      await vpn.updatePeers([spec(1), spec(2)]);
      const before = devicePeers(vpn);
      const err = await vpn.updatePeers(await tc.peers()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireGuardError);
      expect((err as WireGuardError).code).toBe("invalid-argument");
      expect((err as Error).message).toMatch(tc.message);
      expect(vpn.writes).toBe(1);
      expect(devicePeers(vpn)).toEqual(before);
    });
  }

  it("a device failure half-way through the batch restores and verifies the previous peers", async () => {
    await vpn.updatePeers([spec(1), spec(2), spec(3)]);
    const before = devicePeers(vpn);
    vpn.faults = [2]; // remove spec(1) and add spec(4), then fail
    const err = await vpn.updatePeers([spec(2), spec(3), spec(4), spec(5), { ...spec(2), pubKey: Buffer.alloc(32, 9).toString("base64"), vpnIP: "10.118.0.99" }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireGuardError);
    expect((err as WireGuardError).code).toBe("apply-failed");
    expect((err as Error).message).toMatch(/errno=-22.*restored and verified the previous 3 peers/);
    expect(devicePeers(vpn)).toEqual(before);
    expect(vpn.writes).toBe(3); // setup, failed batch, restore
  });

  it("reports an inconsistent device when restoring fails too", async () => {
    await vpn.updatePeers([spec(1)]);
    vpn.faults = [1, 0]; // the batch removes spec(1), then fails; the restoring write fails at once
    const err = await vpn.updatePeers([spec(2)]).catch((e: unknown) => e);
    expect((err as WireGuardError).code).toBe("inconsistent");
    expect((err as WireGuardError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/restoring the previous peers failed/);
  });

  it("updates without reading the device; repairPeers re-reads, restores lost peers and keeps roamed endpoints", async () => {
    await vpn.updatePeers([spec(1), spec(2)]);
    const reads = vpn.reads;
    await vpn.updatePeers([spec(1), spec(2), spec(3)]);
    await vpn.updatePeers([spec(2), spec(3)]);
    expect(vpn.reads).toBe(reads);
    vpn.device.get(spec(2).pubKey)!.endpoint = "203.0.113.7:40000"; // learned by roaming
    vpn.device.delete(spec(3).pubKey); // the device was reset behind our back
    await vpn.updatePeers([spec(2), spec(3)]);
    expect(vpn.device.has(spec(3).pubKey)).toBe(false); // no read: not noticed
    await vpn.repairPeers([spec(2), spec(3)]);
    expect(vpn.reads).toBe(reads + 1);
    expect(vpn.device.get(spec(3).pubKey)?.endpoint).toBe(`${spec(3).publicIP}:51820`);
    expect(vpn.device.get(spec(2).pubKey)?.endpoint).toBe("203.0.113.7:40000");
    await vpn.updatePeers([{ ...spec(2), publicIP: "198.18.7.7" }, spec(3)]); // the Coordinator's record moved
    expect(vpn.device.get(spec(2).pubKey)?.endpoint).toBe("198.18.7.7:51820");
  });

  it("serializes concurrent writes and ends with the last call's peers", async () => {
    const calls = Array.from({ length: 10 }, (_, i) => vpn.updatePeers([spec(1), spec(i + 2)]));
    await Promise.all(calls);
    expect(vpn.maxActive).toBe(1);
    expect([...vpn.device.keys()].sort()).toEqual([spec(1).pubKey, spec(11).pubKey].sort());
  });

  it("refuses use before start and after close; close is idempotent", async () => {
    const fresh = new FakeDeviceVPN(await options());
    await expect(fresh.updatePeers([])).rejects.toThrow(/not started/);
    await expect(fresh.getPublicKey()).rejects.toMatchObject({ code: "closed" });
    await vpn.close();
    await vpn.close();
    await expect(vpn.updatePeers([])).rejects.toThrow(/closed/);
    await expect(vpn.start()).rejects.toThrow(/already closed/);
  });

  const badOptions: Array<{ name: string; patch: Partial<WireGuardOptions>; message: RegExp }> = [
    { name: "a long interface name", patch: { interfaceName: "a".repeat(16) }, message: /^interfaceName: must be 1-15 characters/ },
    { name: "a slash in the interface name", patch: { interfaceName: "wg/0" }, message: /^interfaceName:/ },
    { name: "no key file", patch: { privateKeyFile: "" }, message: /^privateKeyFile: is required$/ },
    { name: "a port out of range", patch: { listenPort: 65536 }, message: /^listenPort: must be an integer port 0-65535/ },
    { name: "a bad namespace", patch: { netns: "a b" }, message: /^netns: not a namespace name/ },
  ];
  for (const tc of badOptions) {
    it(`refuses options with ${tc.name}`, async () => {
      const o = { ...(await options()), ...tc.patch };
      expect(() => new FakeDeviceVPN(o)).toThrow(tc.message);
    });
  }
});

describe("peerConfigFromSpec", () => {
  const k = generateKeyPair().pubKey;
  const cases: Array<{ name: string; spec: WireGuardPeerSpec; want: PeerConfig }> = [
    { name: "default port", spec: { pubKey: k, publicIP: "192.0.2.1", vpnIP: "10.118.0.1" }, want: { pubKey: k, allowedIPs: ["10.118.0.1/32"], endpoint: "192.0.2.1:51820", persistentKeepaliveSec: 25 } },
    { name: "own port", spec: { pubKey: k, publicIP: "192.0.2.1", vpnIP: "10.118.0.1", port: 4000 }, want: { pubKey: k, allowedIPs: ["10.118.0.1/32"], endpoint: "192.0.2.1:4000", persistentKeepaliveSec: 25 } },
    { name: "admin without public IP", spec: { pubKey: k, publicIP: "", vpnIP: "10.118.0.11" }, want: { pubKey: k, allowedIPs: ["10.118.0.11/32"], persistentKeepaliveSec: 25 } },
    { name: "IPv6 endpoint", spec: { pubKey: k, publicIP: "2001:db8::1", vpnIP: "10.118.0.1" }, want: { pubKey: k, allowedIPs: ["10.118.0.1/32"], endpoint: "[2001:db8::1]:51820", persistentKeepaliveSec: 25 } },
  ];
  for (const tc of cases) it(tc.name, () => expect(peerConfigFromSpec(tc.spec, 25, "p")).toEqual(tc.want));
});
