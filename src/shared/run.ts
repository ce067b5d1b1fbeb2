import { execa } from "execa";

/** RunOptions are one child run's stdin (undefined: /dev/null; it may carry a key), time limit and output trimming. */
export interface RunOptions {
  input?: string | Uint8Array;
  /** timeoutMs kills the child after this long (undefined: no limit). */
  timeoutMs?: number;
  /** stripFinalNewline drops the output's last newline (default true). */
  stripFinalNewline?: boolean;
}

/** RunResult is how a child ended; exitCode is undefined when it could not run or was killed. */
export interface RunResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  signal: string | undefined;
  /** spawnCode is the errno name when the program could not be started ("ENOENT"). */
  spawnCode: string | undefined;
}

/**
 * runProcess runs `file args…` without a shell, in the C locale (parsed output never depends on the
 * machine's language), and resolves with how it ended; it never rejects for a failed child. Secrets
 * go only through `input` (stdin), never arguments: those show in `ps`. The one process runner of
 * the OS layers (wireguard, diskencryption); each maps a failure to its own error type.
 */
export async function runProcess(file: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const input = o.input;
  const r = await execa(file, args, {
    ...(input === undefined ? { stdin: "ignore" as const } : { input: typeof input === "string" ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength) }),
    reject: false,
    ...(o.timeoutMs !== undefined ? { timeout: o.timeoutMs } : {}),
    env: { LC_ALL: "C", LANG: "C" },
    stripFinalNewline: o.stripFinalNewline ?? true,
  });
  return {
    exitCode: r.exitCode,
    stdout: String(r.stdout ?? ""),
    stderr: String(r.stderr ?? ""),
    timedOut: r.timedOut,
    signal: r.signal,
    spawnCode: (r as { code?: string }).code,
  };
}
