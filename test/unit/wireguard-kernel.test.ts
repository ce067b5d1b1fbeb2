import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { WireGuardError } from "../../src/wireguard/errors.js";
import { classifyCommandError, CommandError, type CommandRunner } from "../../src/wireguard/exec.js";
import { keyToHex, publicKeyOf } from "../../src/wireguard/keys.js";
import { KernelVPN, parseWgShowDump } from "../../src/wireguard/vpn-kernel.js";
import { detectBackend, type WireGuardPeerSpec } from "../../src/wireguard/vpn.js";

interface Call {
  cmd: string;
  input: string | undefined;
}

/** FakeKernel answers `ip` and `wg` like a host with (or without) the wireguard module. */
class FakeKernel {
  calls: Call[] = [];
  links = new Map<string, string>(); // name → kind
  privKey: string | undefined;
  listenPort = 0;
  peers = new Map<string, { allowed: string; endpoint: string; keepalive: string }>();
  module = true;
  failSet = 0;
  deny = false;

  runner: CommandRunner = async (file, args, options) => {
    const cmd = [file, ...args].join(" ");
    this.calls.push({ cmd, input: options?.input });
    const fail = (out: string, code = 1): never => {
      throw new CommandError(cmd, code, out, false);
    };
    if (this.deny) fail("RTNETLINK answers: Operation not permitted", 2);
    const name = args[file === "wg" ? 1 : 2];
    if (cmd.startsWith("ip link add")) {
      if (!this.module) fail("Error: Unknown device type.", 2);
      if (this.links.has(name)) fail("RTNETLINK answers: File exists", 2);
      this.links.set(name, "wireguard");
    } else if (cmd.startsWith("ip link del")) {
      this.links.delete(name);
    } else if (cmd.startsWith("ip -d -o link show dev")) {
      const n = args[5];
      return { stdout: `7: ${n}: <POINTOPOINT,NOARP> mtu 1420 link/none  \\    ${this.links.get(n)} addrgenmode none\n`, stderr: "" };
    } else if (cmd.startsWith("wg set") && args[2] === "private-key") {
      this.privKey = options?.input?.trim();
      this.listenPort = Number(args[5]);
    } else if (cmd.startsWith("wg set")) {
      if (this.failSet-- > 0) fail("Unable to modify interface: Invalid argument");
      let cur: string | undefined;
      for (let i = 2; i < args.length; i++) {
        const a = args[i];
        if (a === "peer") {
          cur = args[++i]!;
          if (!this.peers.has(cur)) this.peers.set(cur, { allowed: "(none)", endpoint: "(none)", keepalive: "off" });
        } else if (a === "remove") this.peers.delete(cur!);
        else if (a === "endpoint") this.peers.get(cur!)!.endpoint = args[++i]!;
        else if (a === "persistent-keepalive") this.peers.get(cur!)!.keepalive = args[++i]!;
        else if (a === "allowed-ips") this.peers.get(cur!)!.allowed = args[++i] || "(none)";
        else fail(`Invalid argument: ${a}`);
      }
    } else if (cmd.startsWith("wg show") && args[2] === "public-key") {
      if (!this.links.has(name)) fail("Unable to access interface: No such device");
      return { stdout: `${this.privKey ? publicKeyOf(this.privKey) : "(none)"}\n`, stderr: "" };
    } else if (cmd.startsWith("wg show")) {
      if (!this.links.has(name)) fail("Unable to access interface: No such device");
      const head = [this.privKey ?? "(none)", this.privKey ? publicKeyOf(this.privKey) : "(none)", String(this.listenPort), "off"].join("\t");
      const rows = [...this.peers].map(([k, p]) => [k, "(none)", p.endpoint, p.allowed, "0", "0", "0", p.keepalive].join("\t"));
      return { stdout: `${[head, ...rows].join("\n")}\n`, stderr: "" };
    } else if (cmd.startsWith("ip -j address show")) {
      return { stdout: "[]", stderr: "" };
    }
    return { stdout: "", stderr: "" };
  };
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function kernelVPN(fake: FakeKernel, netns?: string): Promise<KernelVPN> {
  const d = await mkdtemp(join(tmpdir(), "am-wgk-"));
  dirs.push(d);
  return new KernelVPN({ interfaceName: "wg0", privateKeyFile: join(d, "wg.key"), runner: fake.runner, ...(netns ? { netns } : {}) });
}
const spec = (n: number): WireGuardPeerSpec => ({ pubKey: Buffer.alloc(32, n).toString("base64"), publicIP: `198.18.0.${n}`, vpnIP: `10.118.0.${n + 10}` });

describe("KernelVPN (fake ip/wg)", () => {
  it("creates the link and passes the private key on stdin only", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake);
    await vpn.start();
    expect(fake.calls.map((c) => c.cmd)).toEqual(["ip link add wg0 type wireguard", "wg set wg0 private-key /proc/self/fd/0 listen-port 51820", "wg show wg0 dump"]);
    expect(await vpn.getPublicKey()).toBe(publicKeyOf(fake.privKey!));
    for (const c of fake.calls) {
      expect(c.cmd).not.toContain(fake.privKey);
      expect(c.cmd).not.toContain(keyToHex(fake.privKey!));
    }
    expect(fake.calls[1].input).toBe(`${fake.privKey}\n`);
  });

  it("runs every command inside the namespace when netns is set", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake, "am-x");
    await vpn.start().catch(() => undefined);
    expect(fake.calls[0].cmd).toBe("ip netns exec am-x ip link add wg0 type wireguard");
  });

  it("applies only the change with one `wg set` (public keys only, no private key), and writes nothing for a no-op", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake);
    await vpn.start();
    await vpn.updatePeers([spec(1), spec(2)]);
    const sets = () => fake.calls.filter((c) => c.cmd.startsWith("wg set wg0 peer"));
    expect(sets()).toHaveLength(1);
    expect(sets()[0].input).toBeUndefined();
    expect(sets()[0].cmd).toBe(`wg set wg0 peer ${spec(1).pubKey} endpoint 198.18.0.1:51820 persistent-keepalive 25 allowed-ips 10.118.0.11/32 peer ${spec(2).pubKey} endpoint 198.18.0.2:51820 persistent-keepalive 25 allowed-ips 10.118.0.12/32`);
    expect((await vpn.listPeers()).map((p) => p.allowedIPs[0]).sort()).toEqual(["10.118.0.11/32", "10.118.0.12/32"]);
    await vpn.updatePeers([spec(2), spec(1)]);
    expect(sets()).toHaveLength(1);
    await vpn.updatePeers([spec(2)]);
    expect(sets()).toHaveLength(2);
    expect(sets()[1].cmd).toBe(`wg set wg0 peer ${spec(1).pubKey} remove`);
    expect([...fake.peers.keys()]).toEqual([spec(2).pubKey]);
    expect(fake.privKey).toBeDefined();
    expect(fake.listenPort).toBe(51820);
  });

  it("keeps an endpoint learned by roaming until the wanted endpoint itself changes", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake);
    await vpn.start();
    await vpn.updatePeers([spec(1), spec(2)]);
    fake.peers.get(spec(1).pubKey)!.endpoint = "203.0.113.7:40000"; // WireGuard learned a new address
    await vpn.updatePeers([spec(1), spec(2), spec(3)]);
    await vpn.repairPeers([spec(1), spec(2), spec(3)]);
    expect(fake.peers.get(spec(1).pubKey)!.endpoint).toBe("203.0.113.7:40000");
    await vpn.updatePeers([{ ...spec(1), publicIP: "198.18.9.9" }, spec(2), spec(3)]);
    expect(fake.peers.get(spec(1).pubKey)!.endpoint).toBe("198.18.9.9:51820");
  });

  it("a rejected `wg set` leaves (and verifies) the previous peers", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake);
    await vpn.start();
    await vpn.updatePeers([spec(1)]);
    fake.failSet = 1;
    await expect(vpn.updatePeers([spec(2)])).rejects.toMatchObject({ code: "apply-failed" });
    expect([...fake.peers.keys()]).toEqual([spec(1).pubKey]);
  });

  it("adopts an existing kernel WireGuard link and leaves it on close", async () => {
    const fake = new FakeKernel();
    fake.links.set("wg0", "wireguard");
    const vpn = await kernelVPN(fake);
    await vpn.start();
    await vpn.close();
    expect(fake.links.has("wg0")).toBe(true);
  });

  it("adopts its own link again (same key) but refuses one with another key, leaving it untouched", async () => {
    const fake = new FakeKernel();
    const d = await mkdtemp(join(tmpdir(), "am-wgk-"));
    dirs.push(d);
    const opts = { interfaceName: "wg0", privateKeyFile: join(d, "wg.key"), runner: fake.runner };
    await new KernelVPN(opts).start(); // creates wg0 with this peer's key; a crash leaves it
    await new KernelVPN(opts).start(); // the restarted peer adopts it
    const stranger = await kernelVPN(fake); // another key file: another key
    const keyBefore = fake.privKey;
    const err = await stranger.start().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "busy" });
    expect((err as Error).message).toMatch(/exists with another key; it is not this peer's/);
    expect(fake.privKey).toBe(keyBefore);
  });

  it("deletes the link it created on close", async () => {
    const fake = new FakeKernel();
    const vpn = await kernelVPN(fake);
    await vpn.start();
    await vpn.close();
    expect(fake.links.has("wg0")).toBe(false);
  });

  const failures: Array<{ name: string; setup: (f: FakeKernel) => void; code: string; message: RegExp }> = [
    { name: "no kernel module", setup: (f) => (f.module = false), code: "unsupported", message: /kernel WireGuard is not available.*userspace/ },
    { name: "a non-WireGuard link of that name", setup: (f) => f.links.set("wg0", "veth"), code: "not-wireguard", message: /exists and is not a kernel WireGuard device/ },
    { name: "not root", setup: (f) => (f.deny = true), code: "permission-denied", message: /needs root \(CAP_NET_ADMIN\)/ },
  ];
  for (const tc of failures) {
    it(`start names the cause: ${tc.name}`, async () => {
      const fake = new FakeKernel();
      tc.setup(fake);
      const err = await (await kernelVPN(fake)).start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireGuardError);
      expect(err).toMatchObject({ code: tc.code });
      expect((err as Error).message).toMatch(tc.message);
    });
  }
});

describe("detectBackend", () => {
  const cases: Array<{ name: string; setup: (f: FakeKernel) => void; want: string }> = [
    { name: "kernel when ip link add … type wireguard works", setup: () => {}, want: "kernel" },
    { name: "userspace without the module", setup: (f) => (f.module = false), want: "userspace" },
    { name: "kernel for an existing kernel WireGuard link", setup: (f) => f.links.set("wg0", "wireguard"), want: "kernel" },
    { name: "userspace for an existing TUN (wireguard-go)", setup: (f) => f.links.set("wg0", "tun"), want: "userspace" },
  ];
  for (const tc of cases) {
    it(tc.name, async () => {
      const fake = new FakeKernel();
      tc.setup(fake);
      const existed = fake.links.has("wg0");
      expect(await detectBackend({ interfaceName: "wg0", runner: fake.runner })).toBe(tc.want);
      expect(fake.links.has("wg0")).toBe(existed); // the probe link is deleted again
      expect(fake.calls.map((c) => c.cmd).includes("ip link del wg0")).toBe(tc.want === "kernel" && !existed);
    });
  }
  it("refuses a non-WireGuard link and reports missing root", async () => {
    const veth = new FakeKernel();
    veth.links.set("wg0", "veth");
    await expect(detectBackend({ interfaceName: "wg0", runner: veth.runner })).rejects.toMatchObject({ code: "not-wireguard" });
    const denied = new FakeKernel();
    denied.deny = true;
    await expect(detectBackend({ interfaceName: "wg0", runner: denied.runner })).rejects.toMatchObject({ code: "permission-denied" });
  });
});

describe("parseWgShowDump", () => {
  it("parses a real dump (wireguard-tools v1.0.20210914) and drops the private key", () => {
    const dump = [
      "SEhISEhISEhISEhISEhISEhISEhISEhISEhISEhISEg=\tkXeyMnjL8PPRfDbyrMm1XpyF+HsiClOG7DcNZj4g4zc=\t51999\toff",
      "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\t(none)\t(none)\t10.118.0.3/32\t0\t0\t0\toff",
      "ERERERERERERERERERERERERERERERERERERERERERE=\t(none)\t1.2.3.4:5\t10.118.0.2/32,fd00::2/128\t1700000000\t92\t148\t25",
      "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\t(none)\t[fd00::1]:51820\t(none)\t0\t0\t0\toff",
    ].join("\n");
    const st = parseWgShowDump(`${dump}\n`);
    expect(st.publicKey).toBe("kXeyMnjL8PPRfDbyrMm1XpyF+HsiClOG7DcNZj4g4zc=");
    expect(st.listenPort).toBe(51999);
    expect(st.peers).toEqual([
      { pubKey: "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=", allowedIPs: ["10.118.0.3/32"], persistentKeepaliveSec: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 },
      { pubKey: "ERERERERERERERERERERERERERERERERERERERERERE=", allowedIPs: ["10.118.0.2/32", "fd00::2/128"], endpoint: "1.2.3.4:5", persistentKeepaliveSec: 25, lastHandshakeSec: 1700000000, rxBytes: 92, txBytes: 148 },
      { pubKey: "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=", allowedIPs: [], endpoint: "[fd00::1]:51820", persistentKeepaliveSec: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 },
    ]);
    expect(JSON.stringify(st)).not.toContain("SEhI");
  });
  it("rejects malformed dumps", () => {
    expect(() => parseWgShowDump("")).toThrow(/missing device line/);
    expect(() => parseWgShowDump("a\tb\t1\toff\nshort\tline\n")).toThrow(WireGuardError);
  });
});

describe("classifyCommandError", () => {
  const cases: Array<{ output: string; notFound?: boolean; code: string }> = [
    { output: "", notFound: true, code: "tool-missing" },
    { output: 'exec of "wg" failed: No such file or directory', code: "tool-missing" },
    { output: "RTNETLINK answers: Operation not permitted", code: "permission-denied" },
    { output: "Unable to access interface: No such device", code: "interface-missing" },
    { output: 'Cannot find device "wg9"', code: "interface-missing" },
    { output: "Unable to access interface: Operation not supported", code: "not-wireguard" },
    { output: "Unable to access interface: Protocol not supported", code: "not-wireguard" },
    { output: 'Cannot open network namespace "am-x": No such file or directory', code: "invalid-argument" },
    { output: "Unable to modify interface: Invalid argument", code: "internal" },
  ];
  for (const tc of cases) {
    it(`${JSON.stringify(tc.output) || "program not found"} → ${tc.code}`, () => {
      const err = classifyCommandError(new CommandError("wg show wg9 dump", tc.notFound ? undefined : 1, tc.output, tc.notFound ?? false), "read device", "wg9");
      expect(err).toMatchObject({ code: tc.code });
      expect((err as Error).message).toMatch(/^read device/);
    });
  }
});
