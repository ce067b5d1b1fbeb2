import { randomBytes } from "node:crypto";
import { mkdir, readFile, truncate, writeFile } from "node:fs/promises";
import { LUKSDisk } from "../diskencryption/luks-disk.js";
import { join } from "node:path";
import type { NetnsHarness, NetnsNode } from "./netns.js";
import { NsProcess } from "./ns-process.js";
import { waitFor } from "../shared/wait.js";

/** pubapiPort is where every local peer's meshd listens (DESIGN.md). */
export const pubapiPort = 9000;
/** swtpmPort is each peer's TPM command port on 127.0.0.1 inside its own namespace (control: +1). */
export const swtpmPort = 2321;
/** metricsPort is where each local meshd serves Prometheus metrics, on its namespace's loopback. */
export const metricsPort = 9100;
/** policyPCRs are the PCRs the local measurement policy pins: the boot chain, 0-10 (11 and 12 are the activation marker). */
export const policyPCRs: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/** LocalPeerOptions say where and how to start one peer. */
export interface LocalPeerOptions {
  net: NetnsHarness;
  /** label names the peer in progress lines and its namespace (`am-<id>-<label>`). */
  label: string;
  /** dir is the peer's own absolute directory: tpm/, state/, swtpm.log, meshd.log. */
  dir: string;
  /** meshdScript is the absolute path of bin/meshd.js. */
  meshdScript: string;
  /** measurementsFile is given to meshd (--measurements); it must exist before start(). */
  measurementsFile: string | ((peer: LocalPeer) => Promise<string>);
  updateIntervalSec: number;
  /** readyTimeoutMs bounds the wait for swtpm and meshd to listen. */
  readyTimeoutMs: number;
  /** managedStore runs meshd with --store managed (an etcd member per Coordinator, /usr/bin/etcd). */
  managedStore?: boolean;
  /** metricsOnVPN: meshd serves metrics on its VPN IP (--metrics-listen vpn:9100), else on 127.0.0.1:9100 in its namespace. */
  metricsOnVPN?: boolean;
  /** meshdEnv adds environment variables to meshd's first start only (a crash point: AM_CRASH_AT). */
  meshdEnv?: Record<string, string>;
  /**
   * disk gives meshd a LUKS2 state disk in a file (--disk DIR/disk.img, its initial key in
   * DIR/disk-initial.key): meshd rotates its key on activation and unlocks it on restart (a file is
   * never mapped, so the state dir stays a plain directory).
   */
  disk?: boolean;
}

/**
 * LocalPeer is one meshd in its own network namespace with its own swtpm (listening on 127.0.0.1
 * inside that namespace), state dir and WireGuard interface (a unique name: wireguard-go's UAPI
 * sockets are shared by every namespace). role, vpnIP and vpnPubKey are filled in by LocalMesh
 * once the peer is activated. stop() ends meshd, then swtpm; the namespace belongs to the harness.
 */
export class LocalPeer {
  /** label names the peer ("coordinator", "node1") in progress lines, its namespace and its directory. */
  readonly label: string;
  /** netns is the peer's network namespace (`am-<id>-<label>`). */
  readonly netns: string;
  /** publicIP is the peer's underlay address (198.18.0.x), where its pubapi and WireGuard port listen. */
  readonly publicIP: string;
  /** wgInterface is the peer's WireGuard device (unique across namespaces: `amwg` + 8 hex). */
  readonly wgInterface: string;
  /** dir holds tpm/ (swtpm state), state/ (meshd's state dir), swtpm.log and meshd.log. */
  readonly dir: string;
  /** role is set once the peer is activated; undefined while it is fresh. */
  role: "coordinator" | "node" | undefined;
  /** vpnIP is the peer's VPN address once known (from admin.json or `meshctl peers`). */
  vpnIP: string | undefined;
  /** vpnPubKey is the peer's WireGuard public key as the Coordinator serves it. */
  vpnPubKey: string | undefined;
  readonly #net: NetnsHarness;
  #swtpm: NsProcess | undefined;
  #meshd: NsProcess | undefined;
  #measurements: string | undefined;
  #o!: LocalPeerOptions;

  private constructor(o: LocalPeerOptions, node: NetnsNode) {
    this.label = o.label;
    this.netns = node.name;
    this.publicIP = node.ip;
    this.wgInterface = o.net.interfaceName("amwg");
    this.dir = o.dir;
    this.#net = o.net;
  }

  /** endpoint is the peer's pubapi endpoint (IP:9000). */
  get endpoint(): string {
    return `${this.publicIP}:${pubapiPort}`;
  }

  /** processes are the peer's running programs (swtpm, meshd), for logs and diagnostics. */
  get processes(): NsProcess[] {
    return [this.#swtpm, this.#meshd].filter((p): p is NsProcess => p !== undefined);
  }

  /**
   * start makes the peer's namespace, starts its swtpm and waits until it listens, resolves the
   * measurements file (which may read this TPM, see readPCRs), then starts meshd and waits until
   * its pubapi listens. On failure the error names the peer and carries its log tail.
   */
  static async start(o: LocalPeerOptions): Promise<LocalPeer> {
    const peer = new LocalPeer(o, o.net.addNode(o.label));
    peer.#o = o;
    try {
      await peer.#start(o);
      return peer;
    } catch (err) {
      const tails = peer.processes.map((p) => `--- ${p.logFile}\n${p.logTail(10)}`).join("\n");
      await peer.stop();
      throw new Error(`start ${o.label}: ${err instanceof Error ? err.message : String(err)}${tails ? `\n${tails}` : ""}`, { cause: err });
    }
  }

  async #start(o: LocalPeerOptions): Promise<void> {
    const tpmDir = join(this.dir, "tpm");
    await mkdir(tpmDir, { recursive: true, mode: 0o700 });
    const swtpm = NsProcess.start({
      name: `${this.label} swtpm`,
      netns: this.netns,
      file: "swtpm",
      args: [
        "socket", "--tpm2",
        "--tpmstate", `dir=${tpmDir}`,
        "--server", `type=tcp,port=${swtpmPort},bindaddr=127.0.0.1`,
        "--ctrl", `type=tcp,port=${swtpmPort + 1},bindaddr=127.0.0.1`,
        "--flags", "not-need-init,startup-clear",
        "--log", "level=1",
      ],
      logFile: join(this.dir, "swtpm.log"),
    });
    this.#swtpm = swtpm;
    await this.#waitListening(o, swtpm, "127.0.0.1", swtpmPort);
    this.#measurements = typeof o.measurementsFile === "string" ? o.measurementsFile : await o.measurementsFile(this);
    if (o.disk) await this.#formatDisk();
    await this.#startMeshd(o);
  }

  /** diskFile is the peer's LUKS2 state disk (a file) when it has one. */
  get diskFile(): string | undefined {
    return this.#o.disk ? join(this.dir, "disk.img") : undefined;
  }

  /** diskInitialKeyFile holds the disk's initial passphrase (mode 0600), before meshd rotates it. */
  get diskInitialKeyFile(): string {
    return join(this.dir, "disk-initial.key");
  }

  async #formatDisk(): Promise<void> {
    const key = randomBytes(32);
    await writeFile(this.diskInitialKeyFile, key, { mode: 0o600 });
    const img = this.diskFile!;
    await writeFile(img, Buffer.alloc(0));
    await truncate(img, 20 * 1024 * 1024);
    await new LUKSDisk({ device: img, pbkdf: { type: "pbkdf2", iterations: 1000 } }).format(key);
  }

  /**
   * crash kills meshd and everything it started (wireguard-go, its etcd member) with SIGKILL, as a
   * crashed systemd service loses its cgroup: no shutdown, its state stays as a crash leaves it.
   * With `meshdOnly`, only meshd dies: its wireguard-go, device and etcd member stay as orphans.
   */
  async crash(options: { meshdOnly?: boolean } = {}): Promise<void> {
    if (options.meshdOnly) {
      await this.#meshd?.kill();
      return;
    }
    const pidFile = join(this.dir, "state", "etcd", "etcd.pid");
    await this.#meshd?.killGroup();
    try {
      process.kill(Number((await readFile(pidFile, "utf8")).trim()), "SIGKILL");
    } catch {
      // no etcd member, or it is gone already
    }
  }

  /**
   * restartMeshd starts meshd again with the same flags on the same state dir (after crash()) and
   * waits until it listens. `env` adds variables (a crash point: AM_CRASH_AT) to this run only.
   */
  async restartMeshd(env: Record<string, string> = {}): Promise<void> {
    await this.#startMeshd(this.#o, env);
  }

  /** meshdExited resolves with how the current meshd ended (a crash point's SIGKILL, say). */
  meshdExited(): Promise<string> {
    if (!this.#meshd) return Promise.reject(new Error(`${this.label}: meshd never started`));
    return this.#meshd.exited;
  }

  async #startMeshd(o: LocalPeerOptions, env: Record<string, string> = o.meshdEnv ?? {}): Promise<void> {
    const measurements = this.#measurements!;
    const meshd = NsProcess.start({
      name: `${this.label} meshd`,
      netns: this.netns,
      file: process.execPath,
      args: [
        o.meshdScript,
        "--listen", this.endpoint,
        "--attestation", "tpm",
        "--tpm", `swtpm:127.0.0.1:${swtpmPort}`,
        "--vpn", "userspace",
        "--wg-interface", this.wgInterface,
        "--state-dir", join(this.dir, "state"),
        // The demo's state dirs are plain directories: it accepts a plaintext master secret (meshd warns).
        "--insecure-state-dir",
        "--update-interval", String(o.updateIntervalSec),
        "--measurements", measurements,
        "--metrics-listen", o.metricsOnVPN ? `vpn:${metricsPort}` : `127.0.0.1:${metricsPort}`,
        ...(o.managedStore ? ["--store", "managed"] : []),
        ...(o.disk ? ["--disk", this.diskFile!, "--disk-initial-key", this.diskInitialKeyFile] : []),
      ],
      logFile: join(this.dir, "meshd.log"),
      env,
    });
    this.#meshd = meshd;
    await this.#waitListening(o, meshd, this.publicIP, pubapiPort);
  }

  /**
   * metrics scrapes this peer's meshd from inside its namespace (GET /metrics on its loopback, or on
   * its VPN IP with metricsOnVPN) and returns the Prometheus text.
   */
  async metrics(): Promise<string> {
    const host = this.#o.metricsOnVPN ? this.vpnIP : "127.0.0.1";
    if (host === undefined) throw new Error(`${this.label} serves metrics on its VPN IP and has none yet`);
    const script = `fetch("http://${host}:${metricsPort}/metrics").then(async (r) => { if (!r.ok) throw new Error("HTTP " + r.status); process.stdout.write(await r.text()); })`;
    const r = await this.#net.exec(this.netns, process.execPath, ["-e", script], { reject: false, timeoutMs: 10_000 });
    if (r.exitCode !== 0) throw new Error(`scrape ${this.label}'s metrics failed (exit ${r.exitCode}): ${r.stderr.trim().split("\n").pop() ?? ""}`);
    return r.stdout;
  }

  /**
   * readPCRs reads SHA-256 PCRs `indices` from this peer's swtpm with tpm2_pcrread (inside its
   * namespace) and returns them as lower-case hex by index.
   */
  async readPCRs(indices: readonly number[] = policyPCRs): Promise<Map<number, string>> {
    const r = await this.#net.exec(this.netns, "tpm2_pcrread", ["-T", `swtpm:host=127.0.0.1,port=${swtpmPort}`, `sha256:${indices.join(",")}`]);
    const pcrs = new Map<number, string>();
    for (const m of r.stdout.matchAll(/^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]{64})\s*$/gm)) pcrs.set(Number(m[1]), m[2].toLowerCase());
    const missing = indices.filter((i) => !pcrs.has(i));
    if (missing.length > 0) throw new Error(`tpm2_pcrread in ${this.netns}: no SHA-256 value for PCR ${missing.join(",")} in its output`);
    return pcrs;
  }

  /** stop ends meshd (SIGTERM, which closes its wireguard-go), then swtpm; idempotent. */
  async stop(): Promise<void> {
    await this.#meshd?.stop();
    await this.crash(); // an etcd member a crashed meshd left behind
    await this.#swtpm?.stop();
  }

  async #waitListening(o: LocalPeerOptions, proc: NsProcess, host: string, port: number): Promise<void> {
    await waitFor(
      async () => ((await this.#net.exec(this.netns, "ss", ["-Hltn", `src ${host}:${port}`])).stdout.trim() !== "" ? true : undefined),
      { what: `${proc.name} to listen on ${host}:${port}`, timeoutMs: o.readyTimeoutMs, intervalMs: 50 },
      () => {
        if (proc.exitStatus !== undefined) throw new Error(`${proc.name} exited (${proc.exitStatus}) before it listened on ${host}:${port}`);
      },
    );
  }
}

/**
 * writePolicy writes measurements.json pinning `pcrs` (DESIGN.md format), mode 0644. The local mesh
 * runs on swtpms, whose AKs are vouched for by the project's test CA: the policy sets
 * tpm.allowTestRoot, which a policy for real hardware never does.
 */
export async function writePolicy(file: string, pcrs: ReadonlyMap<number, string>): Promise<void> {
  const sorted = [...pcrs].sort(([a], [b]) => a - b);
  const policy = { tpm: { pcrs: Object.fromEntries(sorted.map(([i, v]) => [String(i), v])), allowTestRoot: true } };
  await writeFile(file, `${JSON.stringify(policy, null, 2)}\n`, { mode: 0o644 });
}
