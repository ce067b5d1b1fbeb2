import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { runProcess } from "../shared/run.js";
import { WireGuardError } from "./errors.js";

/** CommandOptions are per-call options of a CommandRunner. */
export interface CommandOptions {
  /** input is written to the command's stdin (the only way secrets reach `wg`). */
  input?: string;
  /** timeoutMs kills the command after this long; undefined means 10000. */
  timeoutMs?: number;
}

/** CommandResult is a finished command's output. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * CommandRunner runs a program without a shell and resolves with its output when it exits 0; it
 * rejects with a CommandError otherwise. Implementations must be safe to call concurrently.
 */
export type CommandRunner = (file: string, args: readonly string[], options?: CommandOptions) => Promise<CommandResult>;

/** CommandError is a command that could not start or exited non-zero; `output` is its stderr (or stdout). */
export class CommandError extends Error {
  constructor(
    /** command is the program and arguments (never stdin, which may hold a key). */
    readonly command: string,
    /** exitCode is undefined when the program did not start or was killed. */
    readonly exitCode: number | undefined,
    /** output is the trimmed stderr, or stdout when stderr was empty. */
    readonly output: string,
    /** notFound is true when the program does not exist. */
    readonly notFound: boolean,
    options?: { cause?: unknown },
  ) {
    super(`${command}: ${notFound ? "program not found" : output || `exit status ${exitCode ?? "unknown"}`}`, options);
    this.name = "CommandError";
  }
}

/** execaRunner is the production CommandRunner (execa, no shell, stdin from `input` or /dev/null). */
export const execaRunner: CommandRunner = async (file, args, options = {}) => {
  const command = [file, ...args].join(" ");
  // Node gives children a socket as stdin, and /dev/stdin of a socket cannot be opened (wg's
  // `private-key /proc/self/fd/0` fails). `cat |` hands the command a real pipe instead;
  // the secret still travels only through stdin. sh, not bash: bash given a socket as stdin thinks
  // a remote shell daemon runs it and sources ~/.bashrc (on our CI machines that runs pyenv, which
  // can wait 60 s for a lock a killed shell left behind).
  const [f, a] = args.includes("/proc/self/fd/0") ? ["sh", ["-c", 'cat | "$@"', "sh", file, ...args]] : [file, [...args]];
  const timeoutMs = options.timeoutMs ?? 10_000;
  const r = await runProcess(f, a, { input: options.input ?? "", timeoutMs, stripFinalNewline: false });
  if (r.timedOut) throw new WireGuardError("timeout", `${command}: did not finish within ${timeoutMs} ms`);
  if (r.exitCode !== 0) throw new CommandError(command, r.exitCode, (r.stderr.trim() || r.stdout.trim()).slice(0, 2000), r.spawnCode === "ENOENT");
  return { stdout: r.stdout, stderr: r.stderr };
};

/**
 * inNetns wraps a command to run inside the named network namespace (`ip netns exec`), or returns
 * it unchanged when netns is undefined.
 */
export function inNetns(netns: string | undefined, file: string, args: readonly string[]): [string, string[]] {
  return netns === undefined ? [file, [...args]] : ["ip", ["netns", "exec", netns, file, ...args]];
}

/**
 * findExecutable returns the absolute path of `name` on PATH (or `pathEnv`), or undefined when no
 * executable file of that name exists.
 */
export function findExecutable(name: string, pathEnv: string | undefined = process.env.PATH): string | undefined {
  for (const dir of (pathEnv ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** requireExecutable is findExecutable that throws WireGuardError("tool-missing") naming the package. */
export function requireExecutable(name: string, debianPackage: string, pathEnv?: string): string {
  const found = findExecutable(name, pathEnv);
  if (!found) throw new WireGuardError("tool-missing", `${name} not found on PATH: install the ${debianPackage} package`);
  return found;
}

/**
 * classifyCommandError turns a failed `ip`/`wg` command about interface `iface` into a WireGuardError
 * naming the cause (not root, interface missing, not a WireGuard device, tool missing), prefixed
 * with `operation`. Errors that are not CommandErrors pass through.
 */
export function classifyCommandError(err: unknown, operation: string, iface: string): unknown {
  if (!(err instanceof CommandError)) return err;
  const out = err.output;
  const msg = `${operation}: ${err.message}`;
  if (err.notFound || /exec of .* failed: No such file/i.test(out)) {
    return new WireGuardError("tool-missing", `${msg} (install iproute2 and wireguard-tools)`, { cause: err });
  }
  if (/operation not permitted|permission denied|must be root/i.test(out)) {
    return new WireGuardError("permission-denied", `${operation}: not permitted: configuring ${iface} needs root (CAP_NET_ADMIN): ${out}`, { cause: err });
  }
  if (/cannot open network namespace/i.test(out)) {
    return new WireGuardError("invalid-argument", `${operation}: the network namespace does not exist: ${out}`, { cause: err });
  }
  if (/no such device|cannot find device|does not exist/i.test(out)) {
    return new WireGuardError("interface-missing", `${operation}: interface ${iface} does not exist: ${out}`, { cause: err });
  }
  if (/operation not supported|protocol not supported|not a wireguard/i.test(out)) {
    return new WireGuardError("not-wireguard", `${operation}: interface ${iface} is not a WireGuard device: ${out}`, { cause: err });
  }
  return new WireGuardError("internal", msg, { cause: err });
}
