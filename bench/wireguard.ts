/**
 * WireGuard apply benchmark: how much more does a one-peer change cost on a userspace device that
 * already has 1,000 peers than applying one peer to an empty device? Both are measured side by
 * side in one run (interleaved repetitions, median), through the real UserspaceVPN (validate, diff
 * against the set last written, one `set=1`; no read of the device: that is the rare repair). Needs root: the wireguard-go devices live in a network
 * namespace this benchmark creates and always deletes (also on exit and SIGINT/SIGTERM).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { requireExecutable } from "../src/wireguard/exec.js";
import { uapiSocketPath } from "../src/wireguard/uapi-client.js";
import { UserspaceVPN } from "../src/wireguard/vpn-userspace.js";
import type { WireGuardPeerSpec } from "../src/wireguard/vpn.js";

/** WireGuardBenchOptions tunes benchWireGuard; undefined fields take the defaults. */
export interface WireGuardBenchOptions {
  /** peers on the large device; undefined means 1000. */
  peers?: number;
  /** repetitions measured per side (after 2 warm-up rounds); undefined means 15. */
  repetitions?: number;
}

/**
 * benchWireGuard returns median milliseconds to apply a one-peer change to a device with 1,000
 * peers (`wg_apply_1000_ms`), to apply one peer to an empty device (`wg_apply_1_ms`), their ratio
 * (`wg_apply_change_1000_vs_1_ratio`), and the time of the initial 1,000-peer apply
 * (`wg_initial_apply_1000_ms`). Throws when not root or wireguard-go is missing. Not reentrant.
 */
export async function benchWireGuard(options: WireGuardBenchOptions = {}): Promise<Record<string, number>> {
  const n = options.peers ?? 1000;
  const reps = options.repetitions ?? 15;
  if (process.getuid?.() !== 0) throw new Error("benchWireGuard: needs root (network namespace and TUN devices)");
  requireExecutable("wireguard-go", "wireguard-go");

  const id = randomBytes(3).toString("hex");
  const ns = `am-bench-${id}`;
  const ifaces = [`amwb${id}a`, `amwb${id}b`];
  const dir = mkdtempSync(join(tmpdir(), "am-wgbench-"));
  const cleanup = () => {
    const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout ?? "";
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone
      }
    }
    spawnSync("ip", ["netns", "del", ns]);
    for (const i of ifaces) rmSync(uapiSocketPath(i), { force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    cleanup();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on("exit", cleanup);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const devices: UserspaceVPN[] = [];
  try {
    const add = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
    if (add.status !== 0) throw new Error(`benchWireGuard: ip netns add ${ns}: ${add.stderr.trim()}`);
    spawnSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
    const open = async (iface: string) => {
      const d = new UserspaceVPN({ interfaceName: iface, privateKeyFile: join(dir, `${iface}.key`), netns: ns, listenPort: 0 });
      devices.push(d);
      await d.start();
      return d;
    };
    const big = await open(ifaces[0]);
    const small = await open(ifaces[1]);

    const base = peers(n, 0);
    let t = performance.now();
    await big.updatePeers(base);
    const initial = performance.now() - t;

    const bigMs: number[] = [];
    const smallMs: number[] = [];
    for (let r = 0; r < reps + 2; r++) {
      const extra = peers(1, n + r);
      const measureBig = async () => {
        t = performance.now();
        await big.updatePeers([...base, ...extra]);
        const ms = performance.now() - t;
        await big.updatePeers(base);
        if (r >= 2) bigMs.push(ms);
      };
      const measureSmall = async () => {
        t = performance.now();
        await small.updatePeers(extra);
        const ms = performance.now() - t;
        await small.updatePeers([]);
        if (r >= 2) smallMs.push(ms);
      };
      if (r % 2 === 0) {
        await measureBig();
        await measureSmall();
      } else {
        await measureSmall();
        await measureBig();
      }
    }
    const b = median(bigMs);
    const s = median(smallMs);
    return {
      wg_apply_change_1000_vs_1_ratio: round(b / s),
      wg_apply_1000_ms: round(b),
      wg_apply_1_ms: round(s),
      wg_initial_apply_1000_ms: round(initial),
    };
  } finally {
    for (const d of devices) await d.close().catch(() => undefined);
    cleanup();
    process.off("exit", cleanup);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function peers(count: number, first: number): WireGuardPeerSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const h = 100 + first + i;
    return { pubKey: randomBytes(32).toString("base64"), publicIP: `198.18.${h >> 8}.${h & 255}`, vpnIP: `10.118.${h >> 8}.${h & 255}` };
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(await benchWireGuard(), null, 2)}\n`);
}
