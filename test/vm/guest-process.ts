/**
 * A long-running process in a guest (a daemon such as meshd), started in its own session so the
 * agent's per-command timeout does not reach it. Its stdout and stderr go to `<name>.log` in the
 * VM's share, readable from the host at any time, also after the VM stopped.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import type { ExecOptions, GuestResult } from "./agent.js";
import { tailLines, waitUntil } from "./wait.js";

/** GuestHost is what a GuestProcess needs from its VM. */
export interface GuestHost {
  readonly name: string;
  readonly shareDir: string;
  exec(script: string, options?: ExecOptions): Promise<GuestResult>;
  run(script: string, options?: ExecOptions): Promise<string>;
  serialTail(lines?: number): string;
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

  /** waitForLog polls the log for `pattern`; the timeout error shows the log's tail. */
  async waitForLog(pattern: RegExp, timeoutMs: number): Promise<void> {
    await waitUntil(() => (existsSync(this.logPath) && pattern.test(readFileSync(this.logPath, "utf8")) ? true : undefined), {
      timeoutMs, intervalMs: 200, what: `${pattern} in ${this.name}'s log on ${this.vm.name}`, detail: () => `${this.log(30)}\n--- console ---\n${this.vm.serialTail(15)}`,
    });
  }
}
