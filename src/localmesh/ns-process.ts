import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, closeSync, readFileSync } from "node:fs";

const setpriv = "/usr/bin/setpriv";

/** NsProcessOptions describe one long-running program started inside a network namespace. */
export interface NsProcessOptions {
  /** name labels the process in errors ("node1 meshd"). */
  name: string;
  /** netns is the namespace to run in (`ip netns exec`). */
  netns: string;
  file: string;
  args: readonly string[];
  /** logFile receives stdout and stderr (appended); it stays after the process ends. */
  logFile: string;
  /** env adds variables to this process's environment. */
  env?: Record<string, string>;
  /** cwd is the working directory; undefined: this process's. */
  cwd?: string;
}

/**
 * NsProcess is a program running inside a network namespace with its output in a log file. It runs
 * in its own process group (a terminal's Ctrl-C reaches only its owner, which tears down in order)
 * and, where util-linux's setpriv exists, with a parent-death signal, so it cannot outlive a
 * killed owner. stop() is idempotent and safe to call concurrently.
 */
export class NsProcess {
  readonly name: string;
  readonly logFile: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<string>;
  #status: string | undefined;

  private constructor(o: NsProcessOptions, child: ChildProcess) {
    this.name = o.name;
    this.logFile = o.logFile;
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.once("error", (err) => resolve((this.#status = `could not start: ${err.message}`)));
      child.once("exit", (code, signal) => resolve((this.#status = signal ? `killed by ${signal}` : `exit status ${code}`)));
    });
  }

  /** start spawns the program; a program that cannot be found shows up as an exit (see exitStatus). */
  static start(o: NsProcessOptions): NsProcess {
    const fd = openSync(o.logFile, "a", 0o600);
    try {
      const prefix = existsSync(setpriv) ? [setpriv, "--pdeathsig", "KILL", "--"] : [];
      const child = spawn("ip", ["netns", "exec", o.netns, ...prefix, o.file, ...o.args], {
        stdio: ["ignore", fd, fd],
        detached: true,
        env: { ...process.env, ...o.env },
        ...(o.cwd ? { cwd: o.cwd } : {}),
      });
      return new NsProcess(o, child);
    } finally {
      closeSync(fd);
    }
  }

  /** pid is the process id (the program's, since `ip netns exec` and setpriv exec in place). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** exitStatus describes how the process ended, or is undefined while it runs. */
  get exitStatus(): string | undefined {
    return this.#status;
  }

  /** exited resolves with the exit description once the process has ended. */
  get exited(): Promise<string> {
    return this.#exited;
  }

  /** logTail returns the last `lines` lines of the log file ("" when there is none). */
  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** stop sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process has ended. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.#status !== undefined) return;
    this.#signal("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#signal("SIGKILL");
        resolve();
      }, graceMs);
    });
    await Promise.race([this.#exited, killed]);
    clearTimeout(timer);
    await this.#exited;
  }

  /** kill sends SIGKILL at once (a crash, not a shutdown) and resolves once the process has ended. */
  async kill(): Promise<void> {
    if (this.#status !== undefined) return;
    this.#signal("SIGKILL");
    await this.#exited;
  }

  /**
   * killGroup SIGKILLs the program and every process it started (its process group: what a crash of
   * a systemd service ends, whose cgroup goes with it) and resolves once the program has ended.
   */
  async killGroup(): Promise<void> {
    const pid = this.#child.pid;
    if (this.#status !== undefined || pid === undefined) return;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      this.#signal("SIGKILL"); // no group (already gone): the program alone
    }
    await this.#exited;
  }

  #signal(sig: NodeJS.Signals): void {
    try {
      this.#child.kill(sig);
    } catch {
      // already gone
    }
  }
}
