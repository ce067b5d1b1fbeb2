/**
 * One VM across its boots: a tap, a disk image (/dev/vda), a TPM state dir and a share dir that
 * outlive each boot, and the current boot (QemuBoot) with its guest agent. The cluster (vm.ts)
 * makes VMs; the API is documented there.
 */
import { closeSync, cpSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { execa } from "execa";
import { startSwtpm } from "../helpers/swtpm.js";
import type { Accel } from "./accel.js";
import { AgentClient, type ExecOptions, type GuestResult } from "./agent.js";
import { GuestProcess } from "./guest-process.js";
import { guestShareDir } from "./initramfs.js";
import type { Kernel } from "./kernel.js";
import type { Tap } from "./network.js";
import { hostProcStats, type ProcStats } from "./procstat.js";
import { QemuBoot } from "./qemu.js";
import { VmError, sleep, tailLines, waitUntil, waitWithProgress } from "./wait.js";

/** repoRootPath is this checkout (see vm.ts repoRoot), kept visible in guests through am.keep. */
const repoRootPath = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/** VmContext is what a VM needs from its cluster. */
export interface VmContext {
  readonly kernel: Kernel;
  readonly initrd: string;
  readonly accel: Accel;
  /** workDir holds one directory per VM. */
  readonly workDir: string;
  /** network.ns is the admin namespace QEMU runs in. */
  readonly network: { readonly ns: string };
  /** image is the read-only program image every guest mounts (image.ts); undefined: none. */
  readonly image?: string | undefined;
}

/** VmOptions configure one VM; only `name` is required. */
export interface VmOptions {
  /** name is the guest's hostname and the VM's dir name; unique per cluster. */
  name: string;
  /** memoryMiB: undefined means 1024. */
  memoryMiB?: number;
  /** cpus: undefined means 1 (TCG runs one host thread per vCPU). */
  cpus?: number;
  /** diskMiB is /dev/vda's size (a sparse raw file kept across reboots); undefined means 256. */
  diskMiB?: number;
  /** modules are modprobed before the agent is ready (e.g. "wireguard", "dm_crypt"); virtio_net and virtio_blk always are. */
  modules?: readonly string[];
  /**
   * bootTimeoutMs: a boot fails once it made no progress (console output, 2 s steps of QEMU CPU
   * time) for this long before the agent is ready, and after 4 times this in any case; undefined:
   * 30 s with KVM, 120 s with TCG. A booting guest on a loaded host is slow, an idle one is stuck.
   */
  bootTimeoutMs?: number;
  /** services are started (spawn) after every boot, name → bash command. */
  services?: Readonly<Record<string, string>>;
  /** kernelArgs are appended to the kernel command line. */
  kernelArgs?: readonly string[];
  /** kernel boots another vmlinuz than the cluster's (failure tests). */
  kernel?: string;
  /** agent replaces the guest agent's script (failure tests: a guest that never becomes ready). */
  agent?: string;
  /**
   * provisionTpm provisions the vTPM before its first boot like a GCE vTPM (AK template and an AK
   * certificate of the project's test CA in NV, provisionSimulatedTpm), so meshd's evidence is
   * anchored (policies need "tpm": {"allowTestRoot": true}); undefined: false (a bare TPM).
   */
  provisionTpm?: boolean;
}

/** BootTiming is one boot's duration as seen from the host and from the guest. */
export interface BootTiming {
  /** hostMs is from starting swtpm to seeing the agent's ready file. */
  hostMs: number;
  /** guestUptimeS is the guest's uptime when the agent became ready. */
  guestUptimeS: number;
}

/** Vm is one VM. Methods may be called concurrently except start/stop/reboot, which must not overlap. */
export class Vm {
  /** ip is the guest's address on the bridge (198.18.1.x), reachable from the admin namespace. */
  readonly ip: string;
  readonly dir: string;
  readonly diskPath: string;
  readonly tpmStateDir: string;
  /** shareDir is the host side of the guest's /run/vm. */
  readonly shareDir: string;
  /** serialLog accumulates the console of every boot. */
  readonly serialLog: string;
  /** boots lists every completed boot's timing, in order. */
  readonly boots: BootTiming[] = [];
  private boot: QemuBoot | undefined;
  private serialOffset = 0;
  /** processes are this boot's spawned guest processes by name (the last spawn of a name wins). */
  private readonly processes = new Map<string, GuestProcess>();
  private readonly agent: AgentClient;

  constructor(private readonly cluster: VmContext, readonly options: VmOptions, private readonly tap: Tap) {
    this.ip = tap.ip;
    this.dir = join(cluster.workDir, options.name);
    this.diskPath = join(this.dir, "disk.img");
    this.tpmStateDir = join(this.dir, "tpm");
    this.shareDir = join(this.dir, "share");
    this.serialLog = join(this.dir, "serial.log");
    mkdirSync(this.tpmStateDir, { recursive: true });
    const fd = openSync(this.diskPath, "w");
    ftruncateSync(fd, (options.diskMiB ?? 256) << 20);
    closeSync(fd);
    this.agent = new AgentClient(this.shareDir, { name: options.name, abort: () => this.notRunning(), serialTail: () => this.serialTail() });
  }

  /** name is the guest's hostname. */
  get name(): string {
    return this.options.name;
  }

  /** running is true between a successful start() and stop() while QEMU lives. */
  get running(): boolean {
    return this.notRunning() === undefined;
  }

  private notRunning(): string | undefined {
    return this.boot ? this.boot.exitReason() : `${this.name} is stopped`;
  }

  /** bootProgress changes while a boot advances: console bytes, QEMU's CPU time in 2 s steps (an idle guest needs minutes for one). */
  private bootProgress(): string | undefined {
    const q = this.qemuStats();
    const size = existsSync(this.serialLog) ? statSync(this.serialLog).size : 0;
    return q ? `console ${size - this.serialOffset} B, QEMU CPU ${2 * Math.floor(q.cpuS / 2)} s` : undefined;
  }

  /** serialTail returns the last lines of the current (or last) boot's console. */
  serialTail(lines = 40): string {
    return tailLines(this.serialLog, lines, this.serialOffset);
  }

  /** start boots the VM and resolves when the agent is ready (then starts `services`); VmError on failure. */
  async start(): Promise<BootTiming> {
    if (this.boot) throw new Error(`${this.name}: already started`);
    const t0 = Date.now();
    if (this.options.provisionTpm && readdirSync(this.tpmStateDir).length === 0) await this.#provisionTpm();
    this.serialOffset = existsSync(this.serialLog) ? statSync(this.serialLog).size : 0;
    this.agent.prepare(this.options.agent);
    const c = this.cluster;
    const kernel = this.options.kernel ? { ...c.kernel, vmlinuz: this.options.kernel } : c.kernel;
    const modules = this.options.modules?.length ? [`am.modules=${this.options.modules.join(",")}`] : [];
    this.boot = await QemuBoot.start({
      name: this.name, ns: c.network.ns, kernel, initrd: c.initrd, accel: c.accel,
      memoryMiB: this.options.memoryMiB ?? 1024, cpus: this.options.cpus ?? 1,
      dir: this.dir, diskPath: this.diskPath, ...(c.image ? { imagePath: c.image } : {}), tpmStateDir: this.tpmStateDir, shareDir: this.shareDir,
      serialLog: this.serialLog, tap: this.tap,
      // am.keep: the checkout stays visible in the guest even when it lives under /tmp (CI clones).
      kernelArgs: [`am.name=${this.name}`, `am.ip=${this.tap.cidr}`, `am.keep=${repoRootPath}`, ...(c.image ? ["am.img=1"] : []), ...modules, ...(this.options.kernelArgs ?? [])],
    });
    try {
      const stallMs = this.options.bootTimeoutMs ?? (c.accel.name === "kvm" ? 30_000 : 120_000);
      const guestUptimeS = await waitWithProgress(() => this.agent.readyUptimeS(), {
        what: `${this.name} to boot (agent ready)`,
        stallMs,
        maxMs: 4 * stallMs,
        intervalMs: 100,
        progressEveryMs: 1_000,
        progress: () => this.bootProgress(),
        abort: () => this.notRunning(),
        diagnose: () => `--- serial console (last lines) ---\n${this.serialTail()}`,
      });
      const timing = { hostMs: Date.now() - t0, guestUptimeS };
      this.boots.push(timing);
      for (const [name, command] of Object.entries(this.options.services ?? {})) await this.spawn(name, command);
      return timing;
    } catch (err) {
      await this.stop({ graceful: false });
      throw err;
    }
  }

  /**
   * #provisionTpm provisions the vTPM's state before its first boot (the TPM's NV keeps it across
   * every boot). Each attempt works in a fresh directory with its own swtpm and is bounded, so a
   * swtpm that fails to come up (seen once: its control port refused the TCTI) is retried, and
   * only a completed state is copied into the VM's TPM dir.
   */
  async #provisionTpm(): Promise<void> {
    let last: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const dir = mkdtempSync(join(this.dir, "tpm-provision-"));
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          (async () => {
            const tpm = await startSwtpm({ stateDir: dir });
            await tpm.powerOff();
          })(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("provisioning took over 60 s")), 60_000);
          }),
        ]);
        rmSync(join(dir, "swtpm.log"), { force: true });
        cpSync(dir, this.tpmStateDir, { recursive: true });
        return;
      } catch (err) {
        last = err;
      } finally {
        clearTimeout(timer);
        rmSync(dir, { recursive: true, force: true });
      }
    }
    throw new VmError("failed", `${this.name}: provisioning its vTPM failed 3 times: ${(last as Error)?.message ?? String(last)}`, "");
  }

  /**
   * stop ends the current boot, keeping disk and TPM state. graceful (default): `sync` in the guest,
   * then QEMU is asked to quit; graceful=false is a power cut. Idempotent.
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    const m = this.boot;
    if (!m) return;
    const graceful = options.graceful ?? true;
    if (graceful && this.running) await this.agent.exec("sync", { timeoutMs: 10_000 }).catch(() => undefined);
    await m.stop(graceful);
    this.boot = undefined;
    this.processes.clear();
  }

  /** reboot is stop() then start(); resolves with the new boot's timing. */
  async reboot(options: { graceful?: boolean } = {}): Promise<BootTiming> {
    await this.stop(options);
    return this.start();
  }

  /** exec runs a bash script in the guest; it rejects only on timeout or a dead VM, not on a non-zero exit. */
  exec(script: string, options?: ExecOptions): Promise<GuestResult> {
    const why = this.notRunning();
    if (why) return Promise.reject(new VmError("exited", `exec on ${this.name}: ${why}`, this.serialTail()));
    return this.agent.exec(script, options);
  }

  /** run is exec() that rejects with VmError("failed") unless the script exits 0; resolves with stdout. */
  async run(script: string, options?: ExecOptions): Promise<string> {
    const r = await this.exec(script, options);
    if (r.exitCode !== 0) {
      throw new VmError("failed", `\`${script.trim().split("\n")[0]}\` on ${this.name} exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-2000)}`, "");
    }
    return r.stdout;
  }

  /** spawn starts a long-running guest command in its own session; its output goes to `<name>.log` in the share. */
  async spawn(name: string, command: string): Promise<GuestProcess> {
    const p = new GuestProcess(this, name, guestShareDir);
    await p.start(command);
    this.processes.set(name, p);
    return p;
  }

  /** process returns this boot's last spawned process called `name` (services included), or undefined. */
  process(name: string): GuestProcess | undefined {
    return this.processes.get(name);
  }

  /** qemuStats is the current boot's QEMU process's CPU time and read traffic, or undefined when not running. */
  qemuStats(): ProcStats | undefined {
    return hostProcStats(this.boot?.qemuPid);
  }

  /**
   * diagnose describes this VM for a failure message: QEMU's state and CPU time, each spawned
   * process's log tail, a process listing from inside the guest (bounded by `psTimeoutMs`, so a dead
   * or hung guest does not hang the diagnosis) and the serial console's tail. Never throws.
   */
  async diagnose(options: { logLines?: number; psTimeoutMs?: number } = {}): Promise<string> {
    const out: string[] = [`=== diagnosis of ${this.name} (${this.ip})`];
    const q = this.qemuStats();
    out.push(`QEMU: ${this.notRunning() ?? "running"}${q ? `; CPU ${q.cpuS.toFixed(1)} s, read ${(q.rchar / 2 ** 20).toFixed(1)} MiB in ${q.syscr} calls` : ""}`);
    for (const p of this.processes.values()) out.push(`--- ${p.name}.log (last ${options.logLines ?? 30} lines)`, p.log(options.logLines ?? 30) || "(empty)");
    out.push("--- guest processes (ps)");
    if (this.running) {
      // The guest's side of its network too: a guest that serves but cannot be reached shows here why.
      const ps =
        "ps -eo pid,stat,etime,time,wchan:24,args --sort=-time | cut -c1-200 | head -25; echo; cat /proc/loadavg; " +
        "echo '--- guest network (link, addr, listening, neighbours, eth0 counters)'; ip -br link; ip -br -4 addr; ss -Hltn; ip neigh; " +
        "grep -E 'eth0|ens' /proc/net/dev";
      const t = options.psTimeoutMs ?? 8_000;
      const answer = this.agent.exec(ps, { timeoutMs: t }).then(
        (r) => (r.stdout + r.stderr).trim(),
        (err: unknown) => `(no answer from the agent: ${(err as Error).message.split("\n")[0]})`,
      );
      out.push(await Promise.race([answer, sleep(t + 2_000).then(() => `(no answer from the agent within ${t + 2_000} ms)`)]));
    } else out.push("(not running)");
    out.push(`--- admin namespace's view of ${this.ip} (neighbour, tap, ping)`, await this.#hostNetView());
    out.push("--- serial console (last lines)", this.serialTail(25));
    return out.join("\n");
  }

  /** #hostNetView is the admin namespace's neighbour entry for this guest, its tap's state and counters, and one ping. Never throws. */
  async #hostNetView(): Promise<string> {
    const ns = this.cluster.network.ns;
    const cmd = `ip neigh show ${this.ip}; ip -s -br link show ${this.tap.tap} 2>&1; ip -s link show ${this.tap.tap} | tail -4; ping -c 1 -W 2 ${this.ip} | tail -2`;
    const r = await execa("ip", ["netns", "exec", ns, "timeout", "8", "bash", "--norc", "-c", cmd], { reject: false, all: true, stdin: "ignore" }).catch((e: Error) => ({ all: e.message }));
    return String(r.all ?? "").trim() || "(nothing)";
  }

  /** waitForSerial polls the current boot's console for `pattern`. */
  async waitForSerial(pattern: RegExp, timeoutMs: number): Promise<void> {
    await waitUntil(() => (pattern.test(tailLines(this.serialLog, 10_000, this.serialOffset)) ? true : undefined), {
      timeoutMs, intervalMs: 200, what: `${pattern} on ${this.name}'s console`, abort: () => this.notRunning(), detail: () => this.serialTail(),
    });
  }

  /** killSync SIGKILLs QEMU and swtpm (exit handlers only). */
  killSync(): void {
    this.boot?.killSync();
  }
}

