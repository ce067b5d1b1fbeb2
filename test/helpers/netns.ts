/**
 * A network-namespace harness for e2e tests: namespaces with unique names (`am-<6 hex>-…`), each
 * node joined by a veth pair to a bridge living in its own namespace, commands run with
 * `ip netns exec`, and a teardown that always runs — on destroy() (call it in afterAll), on process
 * exit, and on SIGINT/SIGTERM — killing every process inside our namespaces, deleting the
 * namespaces (which deletes their veths, bridge and TUN devices) and removing the
 * /var/run/wireguard/<iface>.sock files of interfaces we named.
 *
 * Addressing: the underlay is 198.18.0.0/24 (nodes from 198.18.0.2), part of 198.18.0.0/15, the
 * range RFC 2544 reserves for benchmarking networks. It only ever exists inside namespaces this
 * harness made: the bridge namespace has no link to the root namespace and no namespace gets a
 * default route, so no packet leaves; every harness has its own bridge, so harnesses running in
 * parallel (vitest workers) do not see each other even though they reuse the same addresses.
 *
 * A test process killed with SIGKILL cannot clean up; the next harness removes namespaces whose
 * creating process is gone (recorded in /run/attested-mesh-netns/<ns>).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execa } from "execa";
import { findExecutable } from "../../src/wireguard/exec.js";

/** underlayPrefix is the /24 every harness uses inside its own namespaces. */
export const underlayPrefix = "198.18.0";

const registryDir = "/run/attested-mesh-netns";
const wgSocketDir = "/var/run/wireguard";

/** NetnsNode is one namespace joined to the harness's bridge. */
export interface NetnsNode {
  /** name is the namespace name (for `ip netns exec` and WireGuardOptions.netns). */
  name: string;
  /** ip is the node's underlay address on eth0 (198.18.0.x/24). */
  ip: string;
}

/** randomHex returns `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

/**
 * canRunE2E returns why namespace e2e tests cannot run here (not root, a tool or /dev/net/tun
 * missing, namespaces not creatable), or undefined when they can. With AM_REQUIRE_E2E=1 in the
 * environment it throws instead, so CI on a capable machine cannot silently skip.
 */
export function canRunE2E(): string | undefined {
  const reason = probe();
  if (reason && process.env.AM_REQUIRE_E2E === "1") throw new Error(`e2e required (AM_REQUIRE_E2E=1) but cannot run: ${reason}`);
  return reason;
}

function probe(): string | undefined {
  if (process.platform !== "linux") return `needs Linux, this is ${process.platform}`;
  if (process.getuid?.() !== 0) return "needs root (network namespaces, TUN devices)";
  for (const [tool, pkg] of [["ip", "iproute2"], ["wg", "wireguard-tools"], ["wireguard-go", "wireguard-go"], ["ping", "iputils-ping"]] as const) {
    if (!findExecutable(tool)) return `${tool} not found on PATH (install ${pkg})`;
  }
  if (!existsSync("/dev/net/tun")) return "no /dev/net/tun";
  const ns = `am-${randomHex(3)}-probe`;
  const add = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  spawnSync("ip", ["netns", "del", ns]);
  return undefined;
}

const live = new Set<NetnsHarness>();
let hooksInstalled = false;

/**
 * NetnsHarness owns a set of namespaces. Not safe for concurrent destroy(); everything else may be
 * called from one test file's hooks and tests. destroy() is idempotent and never throws.
 */
export class NetnsHarness {
  /** id is the random part of every name this harness makes. */
  readonly id: string;
  /** bridgeNs is the namespace holding bridge `br0`. */
  readonly bridgeNs: string;
  private readonly namespaces: string[] = [];
  private readonly interfaces = new Set<string>();
  private nodeCount = 0;
  private destroyed = false;

  private constructor() {
    this.id = randomHex(3);
    this.bridgeNs = `am-${this.id}-br`;
  }

  /** create sweeps namespaces left by dead test processes, then makes the bridge namespace. */
  static create(): NetnsHarness {
    installHooks();
    sweepOrphans();
    const h = new NetnsHarness();
    live.add(h);
    try {
      h.addNamespace(h.bridgeNs);
      ip("-n", h.bridgeNs, "link", "add", "br0", "type", "bridge");
      ip("-n", h.bridgeNs, "link", "set", "br0", "up");
    } catch (err) {
      h.destroy();
      throw err;
    }
    return h;
  }

  /** addNode makes a namespace with lo up and eth0 (198.18.0.x/24) on the bridge. At most 250 nodes. */
  addNode(): NetnsNode {
    if (this.destroyed) throw new Error("netns harness already destroyed");
    const n = ++this.nodeCount;
    if (n > 250) throw new Error("netns harness: at most 250 nodes");
    const name = `am-${this.id}-n${n}`;
    const node: NetnsNode = { name, ip: `${underlayPrefix}.${n + 1}` };
    this.addNamespace(name);
    ip("-n", this.bridgeNs, "link", "add", `v${n}`, "type", "veth", "peer", "name", "eth0", "netns", name);
    ip("-n", this.bridgeNs, "link", "set", `v${n}`, "master", "br0");
    ip("-n", this.bridgeNs, "link", "set", `v${n}`, "up");
    ip("-n", name, "address", "add", `${node.ip}/24`, "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    return node;
  }

  /** interfaceName returns a fresh WireGuard interface name (`amwg` + 8 hex) whose socket destroy() removes. */
  interfaceName(prefix = "amwg"): string {
    const name = `${prefix}${randomHex(4)}`.slice(0, 15);
    this.interfaces.add(name);
    return name;
  }

  /** exec runs a command inside namespace `ns`; it rejects on a non-zero exit unless `reject` is false. */
  async exec(ns: string, file: string, args: readonly string[], options: { input?: string; timeoutMs?: number; reject?: boolean } = {}): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
    const r = await execa("ip", ["netns", "exec", ns, file, ...args], {
      input: options.input ?? "",
      timeout: options.timeoutMs ?? 15_000,
      reject: options.reject ?? true,
    });
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  }

  /** destroy tears everything down (processes, namespaces, sockets); idempotent, never throws. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const ns of this.namespaces) {
      for (const link of linksIn(ns)) this.interfaces.add(link);
    }
    killAll(this.namespaces);
    for (const ns of [...this.namespaces].reverse()) deleteNamespace(ns);
    for (const iface of this.interfaces) rmSync(`${wgSocketDir}/${iface}.sock`, { force: true });
  }

  private addNamespace(name: string): void {
    this.namespaces.push(name);
    mkdirSync(registryDir, { recursive: true, mode: 0o700 });
    writeFileSync(`${registryDir}/${name}`, String(process.pid));
    ip("netns", "add", name);
    ip("-n", name, "link", "set", "lo", "up");
  }
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
}

function linksIn(ns: string): string[] {
  const r = spawnSync("ip", ["-n", ns, "-o", "link", "show"], { encoding: "utf8" });
  return r.status === 0 ? [...r.stdout.matchAll(/^\d+: ([^:@\s]+)/gm)].map((m) => m[1]!) : [];
}

function pidsIn(namespaces: readonly string[]): number[] {
  return namespaces.flatMap((ns) => {
    const r = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.split(/\s+/).filter(Boolean).map(Number) : [];
  });
}

function killAll(namespaces: readonly string[]): void {
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of pidsIn(namespaces)) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  signal("SIGTERM");
  for (let i = 0; i < 50 && pidsIn(namespaces).length > 0; i++) sleepSync(20);
  signal("SIGKILL");
  for (let i = 0; i < 50 && pidsIn(namespaces).length > 0; i++) sleepSync(20);
}

function deleteNamespace(ns: string): void {
  spawnSync("ip", ["netns", "del", ns], { encoding: "utf8" });
  rmSync(`${registryDir}/${ns}`, { force: true });
}

function sweepOrphans(): void {
  if (!existsSync(registryDir)) return;
  for (const ns of readdirSync(registryDir)) {
    const pid = Number(readFileSync(`${registryDir}/${ns}`, "utf8"));
    if (pid > 0 && pidAlive(pid)) continue;
    for (const link of linksIn(ns)) rmSync(`${wgSocketDir}/${link}.sock`, { force: true });
    killAll([ns]);
    deleteNamespace(ns);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function destroyAll(): void {
  for (const h of [...live]) h.destroy();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", destroyAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      destroyAll();
      // We replaced the default action; if nobody else handles the signal, die of it as intended.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}
