/**
 * The VMs' network: one namespace per cluster (the "admin" namespace) holding bridge br0 with the
 * host side's address 198.18.1.1/24 and one tap per VM (VMs get 198.18.1.2 and up). QEMU runs
 * inside that namespace (it opens its tap there), so tests reach guests by running programs in the
 * admin namespace (`meshctl`, `ping`, a TCP probe).
 *
 * 198.18.1.0/24 is part of 198.18.0.0/15 (RFC 2544 benchmarking). It only ever exists inside the
 * namespace: the namespace has no link to the root namespace and no default route, so nothing leaves.
 * Creation, teardown (killing every process in the namespace, then deleting it with its taps and
 * bridge), exit/signal hooks and the sweep of namespaces left by SIGKILLed test processes are the
 * e2e tier's NetnsHarness (test/helpers/netns.ts).
 */
import { spawnSync } from "node:child_process";

import { NetnsHarness } from "../helpers/netns.js";
import { waitUntil } from "./wait.js";

/** vmSubnet is the /24 of the admin namespace and its VMs. */
export const vmSubnet = "198.18.1";

/** Tap is one VM's attachment to the bridge. */
export interface Tap {
  /** tap is the device name inside the admin namespace. */
  tap: string;
  /** ip is the guest's address (without prefix length); cidr adds "/24". */
  ip: string;
  cidr: string;
  /** mac is the guest NIC's locally administered MAC. */
  mac: string;
}

/** ExecResult is a finished program's output; exitCode is undefined when it was killed. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
}

/**
 * VmNetwork owns the admin namespace, its bridge and taps. destroy() is idempotent, never throws,
 * and also runs on process exit and SIGINT/SIGTERM (through NetnsHarness).
 */
export class VmNetwork {
  /** adminIp is the host side of the bridge, inside `ns`. */
  readonly adminIp = `${vmSubnet}.1`;
  private taps = 0;

  private constructor(private readonly harness: NetnsHarness) {}

  /** ns is the admin namespace's name (for `ip netns exec`). */
  get ns(): string {
    return this.harness.bridgeNs;
  }

  /** create makes the namespace with br0 up at 198.18.1.1/24. */
  static create(): VmNetwork {
    const h = NetnsHarness.create();
    try {
      // br0 has STP off (the default), so taps forward as soon as QEMU opens them.
      ip("-n", h.bridgeNs, "address", "add", `${vmSubnet}.1/24`, "dev", "br0");
    } catch (err) {
      h.destroy();
      throw err;
    }
    return new VmNetwork(h);
  }

  /** addTap makes the next tap on br0 with its guest address; at most 250 per network. */
  addTap(): Tap {
    const n = ++this.taps;
    if (n > 250) throw new Error("vm network: at most 250 taps");
    const tap = `tap${n}`;
    ip("-n", this.ns, "tuntap", "add", "dev", tap, "mode", "tap");
    ip("-n", this.ns, "link", "set", tap, "master", "br0");
    ip("-n", this.ns, "link", "set", tap, "up");
    const host = `${vmSubnet}.${n + 1}`;
    return { tap, ip: host, cidr: `${host}/24`, mac: `52:54:00:12:01:${(n + 1).toString(16).padStart(2, "0")}` };
  }

  /** exec runs a program in the admin namespace; it rejects on a non-zero exit unless `reject` is false. */
  exec(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number; reject?: boolean } = {}): Promise<ExecResult> {
    return this.harness.exec(this.ns, file, args, options);
  }

  /** canConnect says whether a TCP connection from the admin namespace to host:port succeeds within 2 s. */
  async canConnect(host: string, port: number): Promise<boolean> {
    const r = await this.exec("timeout", ["2", "bash", "--norc", "-c", `exec 3<>/dev/tcp/${host}/${port}`], { reject: false });
    return r.exitCode === 0;
  }

  /** waitForPort polls until host:port accepts TCP connections from the admin namespace. */
  async waitForPort(host: string, port: number, timeoutMs = 60_000, detail?: () => string): Promise<void> {
    await waitUntil(async () => ((await this.canConnect(host, port)) ? true : undefined), {
      timeoutMs,
      intervalMs: 250,
      what: `${host}:${port} to accept connections from the admin namespace`,
      ...(detail ? { detail } : {}),
    });
  }

  /** attachDir makes destroy() (and the sweep after a SIGKILLed test process) remove `dir` recursively. */
  attachDir(dir: string): void {
    this.harness.attachDir(dir);
  }

  /** destroy kills every process in the namespace (QEMU, swtpm) and deletes it with its taps and bridge. */
  destroy(): void {
    this.harness.destroy();
  }
}
