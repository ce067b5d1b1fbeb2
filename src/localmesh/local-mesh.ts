import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Admin, lastLine, measureRTT, waitForPing, type MeshctlPeer } from "./admin.js";
import { LocalPeer, policyPCRs, writePolicy } from "./local-peer.js";
import { NetnsHarness, type ExecResult } from "./netns.js";

/** LocalMeshOptions configure a LocalMesh; every field is optional. */
export interface LocalMeshOptions {
  /** updateIntervalSec is every meshd's --update-interval; undefined means 2. */
  updateIntervalSec?: number;
  /** progress receives one human-readable line per step; undefined drops them. */
  progress?: (line: string) => void;
  /** readyTimeoutMs bounds the wait for each swtpm and meshd to listen; undefined means 30000. */
  readyTimeoutMs?: number;
  /** binDir holds meshd.js and meshctl.js; undefined means this repository's bin/ (which runs dist/). */
  binDir?: string;
  /** managedStore runs every meshd with --store managed (an etcd member per Coordinator); default false. */
  managedStore?: boolean;
  /** disk gives every peer a LUKS2 state disk in a file (LocalPeerOptions.disk); default false. */
  disk?: boolean;
  /** metricsOnVPN serves every meshd's metrics on its VPN IP (--metrics-listen vpn:9100) instead of its namespace's loopback; default false. */
  metricsOnVPN?: boolean;
}

/** PeerRow is one line of LocalMesh.status(): a peer and its RTT from the admin through the VPN. */
export interface PeerRow {
  role: "coordinator" | "node" | "admin" | "fresh";
  label: string;
  netns: string;
  publicIP: string;
  vpnIP: string | undefined;
  /** rttMs is the average ping RTT from the admin through its tunnel; undefined for the admin and unactivated peers. */
  rttMs: number | undefined;
}

/**
 * LocalMesh runs an attested mesh on one machine: one network namespace per peer plus one for the
 * admin, joined by veth pairs to a bridge in a namespace of its own (NetnsHarness), each peer with
 * its own swtpm, state dir, log files and meshd; the admin runs the real meshctl and brings its
 * tunnel up with wg-quick. All of it lives under names with a random suffix and in one temp dir.
 *
 * close() tears everything down (processes, namespaces, veths, bridge, WireGuard sockets, the temp
 * dir); the process exit and SIGINT/SIGTERM hooks do the same if close() never runs. Calls may
 * overlap except close(), which should come last. Roles and VPN IPs of peers are learned from the
 * Coordinator through the VPN (refresh()).
 */
export class LocalMesh {
  /** net owns the namespaces; exec() runs a command inside one (tests inspect routes and devices with it). */
  readonly net: NetnsHarness;
  /** admin is the admin's namespace: meshctl, its tunnel. */
  readonly admin: Admin;
  /** workDir is the temp dir holding every peer's and the admin's files (removed by close()). */
  readonly workDir: string;
  /** measurementsFile is the measurement policy every meshd and meshctl get: PCRs 0-10 of a fresh swtpm. */
  readonly measurementsFile: string;
  /** masterSecretFile holds the admin's 32-byte master secret (mode 0600, inside workDir). */
  readonly masterSecretFile: string;
  readonly #o: Required<Omit<LocalMeshOptions, "binDir">> & { binDir: string };
  readonly #peers: LocalPeer[] = [];
  #policy: Promise<string> | undefined;
  #coordinatorVPNIP: string | undefined;
  #wg0conf: string | undefined;
  #adminDir: string | undefined;
  #closed = false;

  private constructor(net: NetnsHarness, workDir: string, o: LocalMeshOptions, binDir: string) {
    this.net = net;
    this.workDir = workDir;
    this.measurementsFile = join(workDir, "measurements.json");
    this.masterSecretFile = join(workDir, "admin", "master-secret");
    this.#o = { updateIntervalSec: o.updateIntervalSec ?? 2, progress: o.progress ?? (() => {}), readyTimeoutMs: o.readyTimeoutMs ?? 30_000, binDir, managedStore: o.managedStore ?? false, metricsOnVPN: o.metricsOnVPN ?? false, disk: o.disk ?? false };
    this.admin = new Admin({ net, node: net.addNode("admin"), dir: join(workDir, "admin"), meshctlScript: join(binDir, "meshctl.js") });
  }

  /** create makes the bridge and the admin's namespace and the temp dir. The caller must close() the mesh. */
  static async create(options: LocalMeshOptions = {}): Promise<LocalMesh> {
    const binDir = options.binDir ?? findBinDir();
    const net = NetnsHarness.create();
    try {
      const workDir = await mkdtemp(join(tmpdir(), `localmesh-${net.id}-`));
      net.attachDir(workDir);
      const mesh = new LocalMesh(net, workDir, options, binDir);
      await mkdir(mesh.admin.dir, { mode: 0o700 });
      await writeFile(mesh.masterSecretFile, randomBytes(32), { mode: 0o600 });
      mesh.#o.progress(`made bridge namespace ${net.bridgeNs} and admin namespace ${mesh.admin.netns} (${mesh.admin.publicIP}); files in ${workDir}`);
      return mesh;
    } catch (err) {
      net.destroy();
      throw err;
    }
  }

  /** peers are the started peers, in the order they became ready. */
  get peers(): readonly LocalPeer[] {
    return this.#peers;
  }

  /** adminDir is the admin's directory (admin.json, wg0.conf), once activate() succeeded. */
  get adminDir(): string | undefined {
    return this.#adminDir;
  }

  /** coordinatorVPNIP is the activated Coordinator's VPN IP, once activate() succeeded. */
  get coordinatorVPNIP(): string | undefined {
    return this.#coordinatorVPNIP;
  }

  /**
   * startPeers starts fresh peers (in parallel) labelled `labels`, and resolves once every meshd
   * serves its pubapi. The first peer ever started also writes measurementsFile from its fresh TPM.
   * `meshdEnv` adds environment variables to these peers' first meshd run (a crash point, in tests).
   */
  async startPeers(labels: readonly string[], options: { meshdEnv?: Record<string, string> } = {}): Promise<LocalPeer[]> {
    this.#o.progress(`starting ${labels.length} peer(s): ${labels.join(", ")} (swtpm, meshd, wireguard-go in one namespace each)`);
    for (const label of labels) await mkdir(join(this.workDir, label), { mode: 0o700 });
    // Namespaces (and so underlay addresses) are made in label order: LocalPeer.start makes its namespace first.
    const started = await Promise.allSettled(labels.map((label) => this.#startPeer(label, options.meshdEnv)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    const peers = started.map((r) => (r as PromiseFulfilledResult<LocalPeer>).value);
    for (const p of peers) this.#o.progress(`  ${p.label}: meshd on ${p.endpoint} in ${p.netns}, WireGuard interface ${p.wgInterface}`);
    return peers;
  }

  async #startPeer(label: string, meshdEnv: Record<string, string> | undefined): Promise<LocalPeer> {
    const dir = join(this.workDir, label);
    const peer = await LocalPeer.start({
      net: this.net,
      label,
      dir,
      meshdScript: join(this.#o.binDir, "meshd.js"),
      measurementsFile: (p) => (this.#policy ??= this.#writePolicy(p)),
      updateIntervalSec: this.#o.updateIntervalSec,
      readyTimeoutMs: this.#o.readyTimeoutMs,
      managedStore: this.#o.managedStore,
      metricsOnVPN: this.#o.metricsOnVPN,
      disk: this.#o.disk,
      ...(meshdEnv ? { meshdEnv } : {}),
    });
    this.#peers.push(peer);
    return peer;
  }

  async #writePolicy(peer: LocalPeer): Promise<string> {
    await writePolicy(this.measurementsFile, await peer.readPCRs(policyPCRs));
    this.#o.progress(`wrote ${this.measurementsFile}: PCRs ${policyPCRs[0]}-${policyPCRs.at(-1)} as a fresh swtpm (${peer.label}) shows them`);
    return this.measurementsFile;
  }

  /**
   * activate runs `meshctl activate` in the admin's namespace: `coordinator` becomes the
   * Coordinator and activates `nodes`. measurements defaults to measurementsFile. It resolves with
   * meshctl's result whatever its exit status; on success it records the Coordinator and the
   * admin's wg0.conf (written to admin/<coordinator label>/) for connectAdmin().
   */
  async activate(coordinator: LocalPeer, nodes: readonly LocalPeer[], options: { measurements?: string; coordinators?: readonly LocalPeer[] } = {}): Promise<ExecResult> {
    const out = join(this.admin.dir, coordinator.label);
    this.#o.progress(`meshctl activate --coordinator ${coordinator.endpoint} --nodes ${nodes.map((n) => n.endpoint).join(",") || "(none)"}`);
    const r = await this.admin.meshctl([
      "activate",
      "--coordinator", coordinator.endpoint,
      ...(nodes.length > 0 ? ["--nodes", nodes.map((n) => n.endpoint).join(",")] : []),
      ...(options.coordinators?.length ? ["--coordinators", options.coordinators.map((n) => n.endpoint).join(",")] : []),
      "--master-secret", this.masterSecretFile,
      "--measurements", options.measurements ?? this.measurementsFile,
      "--out", out,
    ]);
    if (r.exitCode !== 0) return r;
    const admin = JSON.parse(await readFile(join(out, "admin.json"), "utf8")) as { coordinatorVPNIP: string; adminVPNIP: string };
    coordinator.role = "coordinator";
    coordinator.vpnIP = admin.coordinatorVPNIP;
    for (const n of nodes) n.role = "node";
    for (const c of options.coordinators ?? []) c.role = "coordinator";
    this.#coordinatorVPNIP ??= admin.coordinatorVPNIP;
    this.#adminDir ??= out;
    this.#wg0conf ??= join(out, "wg0.conf");
    this.#o.progress(`activated: Coordinator ${coordinator.label} is ${admin.coordinatorVPNIP}, admin is ${admin.adminVPNIP}`);
    return r;
  }

  /** connectAdmin brings the admin's tunnel up from the activation's wg0.conf and refreshes the peer view. */
  async connectAdmin(): Promise<MeshctlPeer[]> {
    if (!this.#wg0conf) throw new Error("connectAdmin: no successful activation yet");
    await this.admin.tunnelUp(this.#wg0conf);
    this.#o.progress(`admin tunnel ${this.admin.wgInterface} up (wg-quick, wireguard-go) in ${this.admin.netns}`);
    return this.refresh();
  }

  /**
   * refresh asks the Coordinator for the peer set through the admin's tunnel (`meshctl peers`),
   * records every local peer's role, VPN IP and key, and adds peers the admin's device lacks.
   */
  async refresh(): Promise<MeshctlPeer[]> {
    if (!this.#coordinatorVPNIP || !this.admin.tunnelIsUp) throw new Error("refresh: the admin tunnel is not up");
    const peers = await this.admin.peers(this.#coordinatorVPNIP);
    for (const p of peers) {
      const local = this.#peers.find((l) => l.publicIP === p.publicIP);
      if (!local || p.role === "admin") continue;
      local.role = p.role;
      local.vpnIP = p.vpnIP;
      local.vpnPubKey = p.vpnPubKey;
    }
    // The admin's wg0.conf follows the mesh through the product's own command, then the tunnel follows the file.
    const r = await this.admin.meshctl(["admin-config", "--out", this.#adminDir!, "--vpn-endpoint", this.#coordinatorVPNIP], 30_000);
    if (r.exitCode !== 0) throw new Error(`meshctl admin-config failed (exit ${r.exitCode}): ${r.stderr.trim().split("\n").pop() ?? ""}`);
    await this.admin.syncTunnel(this.#wg0conf!);
    this.#o.progress(r.stdout.trim());
    return peers;
  }

  /** addNodes runs `meshctl add-nodes` for `nodes` and, when it succeeds and the tunnel is up, refresh(). */
  async addNodes(nodes: readonly LocalPeer[], options: { measurements?: string } = {}): Promise<ExecResult> {
    if (!this.#adminDir) throw new Error("addNodes: no activated Coordinator");
    this.#o.progress(`meshctl add-nodes --nodes ${nodes.map((n) => n.endpoint).join(",")}`);
    // No --coordinator: meshctl tries every Coordinator admin.json lists until one answers.
    const r = await this.admin.meshctl([
      "add-nodes", "--nodes", nodes.map((n) => n.endpoint).join(","),
      "--admin-dir", this.#adminDir,
      "--out", this.#adminDir,
      "--measurements", options.measurements ?? this.measurementsFile,
    ]);
    if (r.exitCode === 0 && this.admin.tunnelIsUp) await this.refresh();
    return r;
  }

  /** ping waits until `ip` answers from namespace `fromNs` (default: the admin's), then returns the average RTT (ms) of three pings. */
  async ping(ip: string, fromNs: string = this.admin.netns, timeoutMs?: number): Promise<number> {
    await waitForPing(this.net, fromNs, ip, timeoutMs);
    return measureRTT(this.net, fromNs, ip);
  }

  /** wgPeers returns the public keys `wg show` lists on a peer's WireGuard device. */
  async wgPeers(peer: LocalPeer): Promise<string[]> {
    return (await this.net.exec(peer.netns, "wg", ["show", peer.wgInterface, "peers"])).stdout.split("\n").filter(Boolean);
  }

  /**
   * status pings every activated peer from the admin through the tunnel — waiting for all to answer
   * in parallel, then measuring one at a time so the RTTs do not compete — and returns one row per
   * peer: the Coordinator, the Nodes by VPN IP, unactivated peers, the admin last.
   */
  async status(): Promise<PeerRow[]> {
    const tunnel = this.admin.tunnelIsUp;
    const active = this.#peers.filter((p) => p.vpnIP !== undefined);
    if (tunnel) await Promise.all(active.map((p) => waitForPing(this.net, this.admin.netns, p.vpnIP!)));
    const rows: PeerRow[] = [];
    for (const p of [...this.#peers].sort(byRoleAndVPNIP)) {
      const rttMs = tunnel && p.vpnIP ? await measureRTT(this.net, this.admin.netns, p.vpnIP) : undefined;
      rows.push({ role: p.role ?? "fresh", label: p.label, netns: p.netns, publicIP: p.publicIP, vpnIP: p.vpnIP, rttMs });
    }
    const adminIP = tunnel ? (await this.net.exec(this.admin.netns, "ip", ["-4", "-o", "address", "show", "dev", this.admin.wgInterface])).stdout : "";
    rows.push({ role: "admin", label: "admin", netns: this.admin.netns, publicIP: this.admin.publicIP, vpnIP: /inet ([\d.]+)\//.exec(adminIP)?.[1], rttMs: undefined });
    return rows;
  }

  /**
   * up is the whole demo: start 1 + `nodes` peers, activate them through meshctl with the
   * measurement policy, bring the admin's tunnel up and return status(). Throws naming the step.
   */
  async up(nodes: number): Promise<PeerRow[]> {
    const [coordinator, ...rest] = await this.startPeers(["coordinator", ...Array.from({ length: nodes }, (_, i) => `node${i + 1}`)]);
    const r = await this.activate(coordinator, rest);
    if (r.exitCode !== 0) throw new Error(`meshctl activate failed (exit ${r.exitCode}): ${lastLine(r.stderr)}`);
    await this.connectAdmin();
    this.#o.progress("pinging every peer through the admin's tunnel");
    return this.status();
  }

  /** diagnostics returns the last `lines` lines of every peer's swtpm and meshd log, for a failure report. */
  diagnostics(lines = 15): string {
    return this.#peers.flatMap((p) => p.processes.map((proc) => `--- ${proc.name} (${proc.exitStatus ?? "running"}): ${proc.logFile}\n${proc.logTail(lines)}`)).join("\n");
  }

  /** close stops every meshd and swtpm, then removes namespaces, sockets and the temp dir. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.progress("tearing down: meshd, swtpm, wireguard-go, namespaces, temp dir");
    await Promise.allSettled(this.#peers.map((p) => p.stop()));
    this.net.destroy();
  }
}

/** byRoleAndVPNIP orders the Coordinator first, then Nodes by VPN IP, then peers not activated. */
function byRoleAndVPNIP(a: LocalPeer, b: LocalPeer): number {
  const rank = (p: LocalPeer) => (p.role === "coordinator" ? 0 : p.role === "node" ? 1 : 2);
  const ipNum = (p: LocalPeer) => (p.vpnIP ?? "255.255.255.255").split(".").reduce((n, o) => n * 256 + Number(o), 0);
  return rank(a) - rank(b) || ipNum(a) - ipNum(b);
}

/** findBinDir finds the repository's bin/ (with meshd.js) above this module, and checks dist/ is built. */
function findBinDir(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "bin", "meshd.js")) && existsSync(join(dir, "package.json"))) {
      if (!existsSync(join(dir, "dist", "src", "cmd", "meshd.js"))) throw new Error(`${resolve(dir, "dist")} is not built: run npm run build`);
      return join(dir, "bin");
    }
    if (dirname(dir) === dir) throw new Error(`no bin/meshd.js above ${fileURLToPath(import.meta.url)}`);
  }
}
