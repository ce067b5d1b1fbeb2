import { copyFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import type { ExecResult, NetnsHarness, NetnsNode } from "./netns.js";
import { waitFor } from "../shared/wait.js";

/** MeshctlPeer is one row of `meshctl peers --json`. */
export interface MeshctlPeer {
  role: "coordinator" | "node" | "admin";
  publicIP: string;
  vpnIP: string;
  vpnPubKey: string;
  wgPort: number;
  pubapiPort: number;
}

/** AdminOptions place the admin: its namespace, its directory, and the meshctl it runs. */
export interface AdminOptions {
  net: NetnsHarness;
  node: NetnsNode;
  /** dir is the admin's absolute directory (activation outputs, its wg-quick file). */
  dir: string;
  /** meshctlScript is the absolute path of bin/meshctl.js. */
  meshctlScript: string;
}

/**
 * Admin is the admin's machine of a local mesh: a namespace on the same bridge as the peers, where
 * meshctl runs as a real process and the admin's WireGuard tunnel is brought up with wg-quick
 * (userspace wireguard-go; a unique interface name). Methods may run concurrently except
 * tunnelUp, which runs once. The harness tears the namespace and the tunnel down.
 */
export class Admin {
  /** netns is the admin's network namespace (`am-<id>-admin`). */
  readonly netns: string;
  /** publicIP is the admin's underlay address. */
  readonly publicIP: string;
  /** dir holds the master secret, each activation's outputs (<coordinator label>/wg0.conf, admin.json) and the wg-quick file. */
  readonly dir: string;
  /** wgInterface is the admin's WireGuard interface (its wg-quick file is `<dir>/<wgInterface>.conf`). */
  readonly wgInterface: string;
  readonly #o: AdminOptions;
  #tunnel = false;

  constructor(o: AdminOptions) {
    this.#o = o;
    this.netns = o.node.name;
    this.publicIP = o.node.ip;
    this.dir = o.dir;
    this.wgInterface = o.net.interfaceName("amadm");
  }

  /** tunnelIsUp is true once tunnelUp succeeded. */
  get tunnelIsUp(): boolean {
    return this.#tunnel;
  }

  /** meshctl runs `meshctl args…` in the admin's namespace; it resolves with the exit status (it never rejects on one). */
  meshctl(args: readonly string[], timeoutMs = 120_000): Promise<ExecResult> {
    return this.#o.net.exec(this.netns, process.execPath, [this.#o.meshctlScript, ...args], { reject: false, timeoutMs });
  }

  /**
   * tunnelUp brings the admin's WireGuard up from the wg0.conf meshctl activate wrote: a copy named
   * after the unique interface (wg-quick takes the name from the file), mode 0600, started with
   * WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go.
   */
  async tunnelUp(wg0conf: string): Promise<void> {
    if (this.#tunnel) throw new Error(`admin tunnel ${this.wgInterface} is already up`);
    const conf = join(this.dir, `${this.wgInterface}.conf`);
    await copyFile(wg0conf, conf);
    await chmod(conf, 0o600);
    const r = await this.#o.net.exec(this.netns, "wg-quick", ["up", conf], { reject: false, env: { WG_QUICK_USERSPACE_IMPLEMENTATION: "wireguard-go" } });
    if (r.exitCode !== 0) throw new Error(`wg-quick up ${conf} in ${this.netns} failed (exit ${r.exitCode}): ${lastLine(r.stderr)}`);
    this.#tunnel = true;
  }

  /**
   * peers runs `meshctl peers --json` through the tunnel against the Coordinator's vpnapi. A call
   * that times out is made once more: after the Coordinator's device was recreated (a restart),
   * the admin's WireGuard keeps sending on its old session until it re-handshakes, ~15 s of silence
   * (WireGuard's keepalive and rekey timeouts), longer than one call's deadline.
   */
  async peers(coordinatorVPNIP: string): Promise<MeshctlPeer[]> {
    let r = await this.meshctl(["peers", "--json", "--vpn-endpoint", coordinatorVPNIP], 30_000);
    if (r.exitCode !== 0 && /DEADLINE_EXCEEDED|Deadline exceeded/.test(r.stderr)) r = await this.meshctl(["peers", "--json", "--vpn-endpoint", coordinatorVPNIP], 30_000);
    if (r.exitCode !== 0) throw new Error(`meshctl peers failed (exit ${r.exitCode}): ${lastLine(r.stderr)}`);
    const parsed = JSON.parse(r.stdout) as { peers: Array<{ peer: MeshctlPeer }> };
    return parsed.peers.map((p) => p.peer);
  }

  /**
   * syncTunnel applies the admin's wg0.conf (as meshctl admin-config or add-nodes --out rewrote it)
   * to the running tunnel with `wg syncconf` on `wg-quick strip`'s output: peers that are new are
   * added, peers no longer listed are removed, sessions of the others are kept.
   */
  async syncTunnel(wg0conf: string): Promise<void> {
    if (!this.#tunnel) throw new Error(`admin tunnel ${this.wgInterface} is not up`);
    const conf = join(this.dir, `${this.wgInterface}.conf`);
    await copyFile(wg0conf, conf);
    await chmod(conf, 0o600);
    const r = await this.#o.net.exec(this.netns, "bash", ["--norc", "-c", 'wg syncconf "$1" <(wg-quick strip "$2")', "sync", this.wgInterface, conf], { reject: false });
    if (r.exitCode !== 0) throw new Error(`wg syncconf ${this.wgInterface} from ${wg0conf} failed (exit ${r.exitCode}): ${lastLine(r.stderr)}`);
  }
}

/**
 * waitForPing waits (bounded) until `ip` answers a ping from namespace `ns`; the first packets may
 * wait for a WireGuard handshake or for the peer to learn of us.
 */
export async function waitForPing(net: NetnsHarness, ns: string, ip: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(
    async () => ((await net.exec(ns, "ping", ["-n", "-c", "1", "-W", "1", ip], { reject: false })).exitCode === 0 ? true : undefined),
    { what: `${ip} to answer a ping from ${ns}`, timeoutMs, intervalMs: 50 },
  );
}

/** measureRTT sends three pings from namespace `ns` to `ip` and returns their average RTT in ms. */
export async function measureRTT(net: NetnsHarness, ns: string, ip: string): Promise<number> {
  const r = await net.exec(ns, "ping", ["-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", ip], { reject: false });
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (r.exitCode !== 0 || !m) throw new Error(`ping ${ip} from ${ns}: ${lastLine(r.stdout) || lastLine(r.stderr)}`);
  return Number(m[1]);
}

/** lastLine returns the last non-empty line of a command's output. */
export function lastLine(text: string): string {
  return text.trimEnd().split("\n").at(-1)?.trim() ?? "";
}
