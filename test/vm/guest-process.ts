/**
 * A long-running process in a guest (a daemon such as meshd), started in its own session so the
 * agent's per-command timeout does not reach it. Its stdout and stderr go to `<name>.log` in the
 * VM's share, readable from the host at any time, also after the VM stopped.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import type { ExecOptions, GuestResult } from "./agent.js";
import { guestStatsScript, parseGuestStats, type ProcStats } from "./procstat.js";
import { tailLines, waitUntil, waitWithProgress } from "./wait.js";

/** GuestHost is what a GuestProcess needs from its VM. */
export interface GuestHost {
  readonly name: string;
  readonly shareDir: string;
  exec(script: string, options?: ExecOptions): Promise<GuestResult>;
  run(script: string, options?: ExecOptions): Promise<string>;
  serialTail(lines?: number): string;
  /** diagnose describes the VM for a failure message (see Vm.diagnose). */
  diagnose(): Promise<string>;
  /** qemuStats is the QEMU process's CPU time and reads on the host, or undefined when it is gone. */
  qemuStats(): ProcStats | undefined;
}

/** ProgressOptions bound GuestProcess.waitFor. */
export interface ProgressOptions {
  /** stallMs: fail once neither the log nor the process's CPU time or reads advanced for this long; undefined: 60000. */
  stallMs?: number;
  /** maxMs: fail after this long in any case; undefined: 600000. */
  maxMs?: number;
  /** intervalMs between checks; undefined: 500. */
  intervalMs?: number;
  /** progressEveryMs: how often progress is sampled; undefined: 5000. */
  progressEveryMs?: number;
  /** statsEveryMs: while the log is quiet, ask the guest for the process's stats at most this often; undefined: 15000. */
  statsEveryMs?: number;
}

/** GuestProcess is one spawned guest process; its methods may be called concurrently. */
export class GuestProcess {
  /** logPath is the host path of the process's output. */
  readonly logPath: string;
  private readonly guest: (ext: string) => string;

  constructor(private readonly vm: GuestHost, readonly name: string, guestShareDir: string) {
    if (!/^[a-z0-9][a-z0-9_-]{0,40}$/.test(name)) throw new Error(`guest process name ${JSON.stringify(name)}: want [a-z0-9_-]+`);
    this.logPath = join(vm.shareDir, `${name}.log`);
    this.guest = (ext) => `${guestShareDir}/${name}.${ext}`;
  }

  /** start launches `command` (bash) and resolves once its pid is known. */
  async start(command: string): Promise<void> {
    writeFileSync(join(this.vm.shareDir, `${this.name}.sh`), `echo $$ > ${this.guest("pid")}\nexec ${command}\n`);
    const pidFile = join(this.vm.shareDir, `${this.name}.pid`);
    writeFileSync(pidFile, "");
    await this.vm.run(`setsid -f bash ${this.guest("sh")} > ${this.guest("log")} 2>&1 < /dev/null`, { timeoutMs: 10_000 });
    await waitUntil(() => (readFileSync(pidFile, "utf8").trim() ? true : undefined), {
      timeoutMs: 10_000, what: `${this.name} on ${this.vm.name} to start`, detail: () => this.log(),
    });
  }

  /** log returns the process's output so far (last 200 lines). */
  log(lines = 200): string {
    return existsSync(this.logPath) ? tailLines(this.logPath, lines) : "";
  }

  /** alive says whether the process still runs. */
  async alive(): Promise<boolean> {
    return (await this.vm.exec(`kill -0 "$(cat ${this.guest("pid")})"`, { timeoutMs: 10_000 })).exitCode === 0;
  }

  /** kill sends a signal (default TERM) and waits up to waitMs for the process to be gone. */
  async kill(signal = "TERM", waitMs = 10_000): Promise<void> {
    await this.vm.exec(`kill -s ${signal} "$(cat ${this.guest("pid")})"`, { timeoutMs: 10_000 });
    await waitUntil(async () => ((await this.alive()) ? undefined : true), {
      timeoutMs: waitMs, intervalMs: 200, what: `${this.name} on ${this.vm.name} to exit after SIG${signal}`, detail: () => this.log(20),
    });
  }

  /**
   * stats reads the process's CPU time and reads inside the guest through the agent (bounded by
   * timeoutMs), or undefined when it is gone or the agent did not answer.
   */
  async stats(timeoutMs = 5_000): Promise<ProcStats | undefined> {
    const r = await this.vm.exec(guestStatsScript(this.guest("pid")), { timeoutMs }).catch(() => undefined);
    if (!r || r.exitCode !== 0) return undefined;
    try {
      return parseGuestStats(r.stdout);
    } catch {
      return undefined;
    }
  }

  /**
   * waitFor polls `check` until it returns a value other than undefined. The process counts as
   * progressing while its log grows or its CPU time or read bytes (read through the agent) advance:
   * then the wait goes on up to maxMs; after stallMs without progress it fails at once. Every
   * failure (stall, maxMs, the VM exiting) rejects with a VmError ending in the VM's diagnosis.
   */
  waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, options: ProgressOptions = {}): Promise<T> {
    const logBytes = () => (existsSync(this.logPath) ? statSync(this.logPath).size : 0);
    let known = ""; // the last stats read: a guest too busy to answer once is not progress
    let lastBytes = -1;
    let lastAsked = 0;
    let qemuAt = Date.now();
    let qemuCPU = this.vm.qemuStats()?.cpuS ?? 0;
    return waitWithProgress(check, {
      what: `${what} (${this.name} on ${this.vm.name})`,
      stallMs: options.stallMs ?? 60_000,
      maxMs: options.maxMs ?? 600_000,
      intervalMs: options.intervalMs ?? 500,
      ...(options.progressEveryMs !== undefined ? { progressEveryMs: options.progressEveryMs } : {}),
      progress: async () => {
        // A growing log is progress enough; a quiet one costs a guest command (fork and exec under
        // TCG: ~0.3 s of the guest's CPU), so at most one every 15 s.
        const bytes = logBytes();
        if (bytes === lastBytes && Date.now() - lastAsked >= (options.statsEveryMs ?? 15_000)) {
          lastAsked = Date.now();
          const s = await this.stats();
          if (s) known = `, cpu ${s.cpuS.toFixed(2)} s, read ${s.rchar} B`;
          else {
            // The agent did not answer. A guest whose vCPU ran at least half the time since the
            // last look is busy (a loaded host), not stuck: that counts; an idle silent one does not.
            const q = this.vm.qemuStats();
            const busy = q !== undefined && q.cpuS - qemuCPU >= (0.5 * (Date.now() - qemuAt)) / 1000;
            if (q && busy) known = `, guest too busy to answer (QEMU CPU ${q.cpuS.toFixed(1)} s)`;
          }
          const q = this.vm.qemuStats();
          if (q) [qemuAt, qemuCPU] = [Date.now(), q.cpuS];
        }
        lastBytes = bytes;
        return `log ${bytes} B${known}`;
      },
      diagnose: () => this.vm.diagnose(),
    });
  }

  /** waitForLog polls the log for `pattern`; the timeout error shows the log's tail. */
  async waitForLog(pattern: RegExp, timeoutMs: number): Promise<void> {
    await waitUntil(() => (existsSync(this.logPath) && pattern.test(readFileSync(this.logPath, "utf8")) ? true : undefined), {
      timeoutMs, intervalMs: 200, what: `${pattern} in ${this.name}'s log on ${this.vm.name}`, detail: () => `${this.log(30)}\n--- console ---\n${this.vm.serialTail(15)}`,
    });
  }
}
