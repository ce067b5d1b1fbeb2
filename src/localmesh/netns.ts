/**
 * Network namespaces for a local mesh (the e2e tests use them too, through their netns helper):
 * namespaces with unique names (`am-<6 hex>-…`), each node joined by a veth pair to a bridge living
 * in its own namespace, commands run with `ip netns exec`, and a teardown that always runs — on
 * destroy(), on process exit, and on SIGINT/SIGTERM (cleanup.ts) — killing every process inside our
 * namespaces, deleting the namespaces (which deletes their veths, bridge and TUN devices), removing the
 * /var/run/wireguard/<iface>.sock files of their interfaces (wireguard-go's UAPI sockets are shared
 * by all namespaces) and the directories attached with attachDir().
 *
 * Addressing: the underlay is 198.18.0.0/24 (nodes from 198.18.0.2), part of 198.18.0.0/15, the
 * range RFC 2544 reserves for benchmarking networks. It only ever exists inside namespaces this
 * module made: the bridge namespace has no link to the root namespace and no namespace gets a
 * default route, so no packet leaves; every harness has its own bridge, so harnesses running in
 * parallel do not see each other even though they reuse the same addresses.
 *
 * A process killed with SIGKILL cannot clean up; the next harness removes namespaces (and attached
 * directories) whose creating process is gone, as recorded in /run/attested-mesh-netns/<ns>.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execa } from "execa";
import { registerCleanup } from "./cleanup.js";

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

/** ExecResult is a finished command run inside a namespace. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

/** randomHex returns `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

/**
 * NetnsHarness owns a set of namespaces. Not safe for concurrent destroy(); everything else may be
 * called concurrently from one process. destroy() is idempotent and never throws.
 */
export class NetnsHarness {
  /** id is the random part of every name this harness makes. */
  readonly id: string;
  /** bridgeNs is the namespace holding bridge `br0`. */
  readonly bridgeNs: string;
  private readonly namespaces: string[] = [];
  private readonly interfaces = new Set<string>();
  private readonly dirs: string[] = [];
  private nodeCount = 0;
  private destroyed = false;
  private readonly unregister: () => void;

  private constructor() {
    this.id = randomHex(3);
    this.bridgeNs = `am-${this.id}-br`;
    this.unregister = registerCleanup(() => this.destroy());
  }

  /** create sweeps namespaces left by dead processes, then makes the bridge namespace. */
  static create(): NetnsHarness {
    sweepOrphans();
    const h = new NetnsHarness();
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

  /**
   * addNode makes a namespace (`am-<id>-<label>`, label default `n<k>`) with lo up and eth0
   * (198.18.0.x/24) on the bridge. At most 250 nodes; labels must be unique within the harness.
   */
  addNode(label?: string): NetnsNode {
    if (this.destroyed) throw new Error("netns harness already destroyed");
    const n = ++this.nodeCount;
    if (n > 250) throw new Error("netns harness: at most 250 nodes");
    if (label !== undefined && !/^[a-z0-9]{1,20}$/.test(label)) throw new Error(`netns harness: label must be 1-20 of a-z0-9, got ${JSON.stringify(label)}`);
    const name = `am-${this.id}-${label ?? `n${n}`}`;
    const node: NetnsNode = { name, ip: `${underlayPrefix}.${n + 1}` };
    this.addNamespace(name);
    ip("-n", this.bridgeNs, "link", "add", `v${n}`, "type", "veth", "peer", "name", "eth0", "netns", name);
    ip("-n", this.bridgeNs, "link", "set", `v${n}`, "master", "br0");
    ip("-n", this.bridgeNs, "link", "set", `v${n}`, "up");
    ip("-n", name, "address", "add", `${node.ip}/24`, "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    return node;
  }

  /** interfaceName returns a fresh WireGuard interface name (`prefix` + 8 hex, ≤15) whose socket destroy() removes. */
  interfaceName(prefix = "amwg"): string {
    const name = `${prefix}${randomHex(4)}`.slice(0, 15);
    this.interfaces.add(name);
    return name;
  }

  /** attachDir makes destroy() (and a later sweep, should this process die) remove `dir` recursively. */
  attachDir(dir: string): void {
    this.dirs.push(dir);
    this.writeRegistry(this.bridgeNs);
  }

  /**
   * exec runs a command inside namespace `ns`; it rejects on a non-zero exit unless `reject` is false.
   * Without `input` stdin is /dev/null: a socket as stdin (Node's pipes are socketpairs) makes bash
   * source ~/.bashrc as if a remote shell daemon ran it, which on our machines runs pyenv.
   */
  async exec(ns: string, file: string, args: readonly string[], options: { input?: string; timeoutMs?: number; reject?: boolean; env?: Record<string, string> } = {}): Promise<ExecResult> {
    const r = await execa("ip", ["netns", "exec", ns, file, ...args], {
      ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" as const }),
      timeout: options.timeoutMs ?? 15_000,
      reject: options.reject ?? true,
      ...(options.env ? { env: options.env } : {}),
    });
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  }

  /** destroy tears everything down (processes, namespaces, sockets, attached dirs); idempotent, never throws. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.unregister();
    for (const ns of this.namespaces) {
      for (const link of linksIn(ns)) this.interfaces.add(link);
    }
    killAll(this.namespaces);
    for (const ns of [...this.namespaces].reverse()) deleteNamespace(ns);
    for (const iface of this.interfaces) rmSync(`${wgSocketDir}/${iface}.sock`, { force: true });
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
  }

  private addNamespace(name: string): void {
    this.namespaces.push(name);
    this.writeRegistry(name);
    ip("netns", "add", name);
    ip("-n", name, "link", "set", "lo", "up");
  }

  private writeRegistry(ns: string): void {
    mkdirSync(registryDir, { recursive: true, mode: 0o700 });
    const dirs = ns === this.bridgeNs ? this.dirs : [];
    writeFileSync(`${registryDir}/${ns}`, JSON.stringify({ pid: process.pid, dirs }));
  }
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
}

function linksIn(ns: string): string[] {
  const r = spawnSync("ip", ["-n", ns, "-o", "link", "show"], { encoding: "utf8" });
  return r.status === 0 ? [...r.stdout.matchAll(/^\d+: ([^:@\s]+)/gm)].map((m) => m[1]) : [];
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

/** readRegistry reads an entry: JSON {pid, dirs}, or a bare pid as older harnesses wrote it. */
function readRegistry(ns: string): { pid: number; dirs: string[] } {
  try {
    const text = readFileSync(`${registryDir}/${ns}`, "utf8").trim();
    if (!text.startsWith("{")) return { pid: Number(text), dirs: [] };
    const v = JSON.parse(text) as { pid?: unknown; dirs?: unknown };
    const dirs = Array.isArray(v.dirs) ? v.dirs.filter((d): d is string => typeof d === "string" && d.startsWith("/") && d.length > 1) : [];
    return { pid: Number(v.pid), dirs };
  } catch {
    return { pid: 0, dirs: [] };
  }
}

function sweepOrphans(): void {
  if (!existsSync(registryDir)) return;
  for (const ns of readdirSync(registryDir)) {
    const { pid, dirs } = readRegistry(ns);
    if (pid > 0 && pidAlive(pid)) continue;
    for (const link of linksIn(ns)) rmSync(`${wgSocketDir}/${link}.sock`, { force: true });
    killAll([ns]);
    deleteNamespace(ns);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
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
