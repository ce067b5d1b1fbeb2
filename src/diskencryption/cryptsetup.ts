/**
 * The thin layer over the `cryptsetup` binary: one child per call, keys only on its stdin
 * (`--key-file -` or a positional new-key file `-`), a C locale so its messages parse, and exit
 * statuses turned into typed errors. Parsers for its output are pure and exported for tests.
 */
import { runProcess, type RunResult as ProcessResult } from "../shared/run.js";
import type { Logger } from "../shared/logger.js";
import { CryptsetupError, errorForExit } from "./errors.js";

/** luks2MaxKeyslots is the number of keyslot IDs (0..31) a LUKS2 header has. */
export const luks2MaxKeyslots = 32;

/** maxKeyBytes is cryptsetup's default limit on a key file (8 MiB); longer keys are refused. */
export const maxKeyBytes = 8 * 1024 * 1024;

/**
 * PBKDFOptions choose how new keyslots derive their key (format, new passphrases). `undefined`
 * fields leave cryptsetup's choice (argon2id benchmarked to about 2 s). Tests use
 * `{ type: "pbkdf2", iterations: 1000 }`, which is fast and weak: never use it for real disks.
 */
export interface PBKDFOptions {
  /** type is the key-derivation function (`--pbkdf`). */
  type: "pbkdf2" | "argon2i" | "argon2id";
  /** iterations forces the iteration count or argon time cost, skipping the benchmark (`--pbkdf-force-iterations`). */
  iterations?: number;
  /** memoryKiB is argon's memory cost in KiB (`--pbkdf-memory`). */
  memoryKiB?: number;
  /** parallelThreads is argon's parallel cost (`--pbkdf-parallel`). */
  parallelThreads?: number;
  /** iterTimeMs is the benchmark's target unlock time in milliseconds (`--iter-time`). */
  iterTimeMs?: number;
}

/** pbkdfArgs renders PBKDFOptions as cryptsetup arguments; throws TypeError on a malformed value. */
export function pbkdfArgs(p: PBKDFOptions | undefined): string[] {
  if (p === undefined) return [];
  if (!["pbkdf2", "argon2i", "argon2id"].includes(p.type)) {
    throw new TypeError(`pbkdf.type: must be pbkdf2, argon2i or argon2id, got ${JSON.stringify(p.type)}`);
  }
  const args = ["--pbkdf", p.type];
  const num = (field: keyof PBKDFOptions, flag: string, min: number): void => {
    const v = p[field];
    if (v === undefined) return;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      throw new TypeError(`pbkdf.${field}: must be an integer >= ${min}, got ${String(v)}`);
    }
    args.push(flag, String(v));
  };
  num("iterations", "--pbkdf-force-iterations", 1);
  num("memoryKiB", "--pbkdf-memory", 32);
  num("parallelThreads", "--pbkdf-parallel", 1);
  num("iterTimeMs", "--iter-time", 1);
  if (p.type === "pbkdf2" && (p.memoryKiB !== undefined || p.parallelThreads !== undefined)) {
    throw new TypeError("pbkdf: memoryKiB and parallelThreads apply to argon2 only");
  }
  return args;
}

/** RunResult is a finished cryptsetup run whose exit status the caller accepted. */
export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** RunContext describes one run for error messages and input. */
export interface RunContext {
  /** op names the operation for messages ("update passphrase"). */
  op: string;
  /** device is the device the run is about. */
  device: string;
  /** key, when set, is written to the child's stdin and then closed; otherwise stdin is /dev/null. */
  key?: Uint8Array;
  /** input is non-secret stdin (a token's JSON); ignored when `key` is set. */
  input?: Uint8Array;
  /** keyContext says a key is involved (stdin or a key file), so exit 2 means a wrong key. */
  keyContext?: boolean;
  /** okExitCodes are the statuses returned instead of thrown (default [0]). */
  okExitCodes?: readonly number[];
}

/** CryptsetupRunnerOptions configure a {@link CryptsetupRunner}. */
export interface CryptsetupRunnerOptions {
  /** path of the binary (default "cryptsetup", found on PATH). */
  path: string;
  /** timeoutMs bounds each run; the child gets SIGTERM after it. */
  timeoutMs: number;
  logger: Logger;
  /** exec runs the child (default {@link execaExec}); unit tests inject a fake. */
  exec?: Exec;
}

/** ExecOptions are one child run's stdin (undefined: /dev/null) and time limit. */
export interface ExecOptions {
  input?: Uint8Array;
  timeoutMs: number;
}

/** ExecResult is how a child ended; exitCode is undefined when it could not run or was killed. */
export type ExecResult = Omit<ProcessResult, "timedOut" | "signal" | "spawnCode"> & Partial<Pick<ProcessResult, "timedOut" | "signal" | "spawnCode">>;

/**
 * Exec runs `file args…` in the C locale and resolves with how it ended; it never rejects for a
 * failed child. Implementations must pass `input` only on stdin (it may be a key).
 */
export type Exec = (file: string, args: readonly string[], options: ExecOptions) => Promise<ExecResult>;

/** execaExec is the real {@link Exec}: runProcess (src/shared/run.ts), stdin from input or /dev/null. */
export const execaExec: Exec = (file, args, options) => runProcess(file, args, options);

/**
 * CryptsetupRunner runs cryptsetup. It does not serialize: callers hold cryptsetupMutex around
 * whole operations. Arguments must never contain key bytes (they show in `ps`); pass keys in
 * `ctx.key`, which goes to stdin only.
 */
export class CryptsetupRunner {
  constructor(private readonly opts: CryptsetupRunnerOptions) {}

  /** run executes `cryptsetup args…` and returns its output, or throws a typed DiskError. */
  async run(args: readonly string[], ctx: RunContext): Promise<RunResult> {
    const started = Date.now();
    const keys = ctx.key ? [ctx.key] : [];
    const input = ctx.key ?? ctx.input;
    const r = await (this.opts.exec ?? execaExec)(this.opts.path, args, { ...(input ? { input } : {}), timeoutMs: this.opts.timeoutMs });
    this.opts.logger.debug("cryptsetup", {
      op: ctx.op,
      args: args.join(" "),
      exitCode: r.exitCode,
      durationMs: Date.now() - started,
    });
    if (r.timedOut) {
      throw new CryptsetupError(
        "timeout",
        ctx.device,
        `${ctx.op} ${ctx.device}: cryptsetup ${args[0] ?? ""} did not finish within ${this.opts.timeoutMs} ms`,
      );
    }
    if (r.exitCode === undefined) {
      const spawnCode = r.spawnCode;
      if (spawnCode === "ENOENT") {
        throw new CryptsetupError(
          "cryptsetup-not-found",
          ctx.device,
          `${ctx.op} ${ctx.device}: cannot run ${this.opts.path}: not found (install cryptsetup-bin)`,
        );
      }
      throw new CryptsetupError(
        "internal",
        ctx.device,
        `${ctx.op} ${ctx.device}: cryptsetup ${args[0] ?? ""} ${r.signal ? `was killed by ${r.signal}` : `failed to run (${spawnCode ?? "unknown"})`}`,
      );
    }
    const { stdout, stderr } = r;
    if (!(ctx.okExitCodes ?? [0]).includes(r.exitCode)) {
      throw errorForExit(r.exitCode, stderr || stdout, { op: ctx.op, device: ctx.device, keyContext: ctx.keyContext ?? keys.length > 0, keys });
    }
    return { exitCode: r.exitCode, stdout, stderr };
  }
}

/** parseKeyslotLine returns N from "Key slot N <verb>." (cryptsetup -v, C locale), or undefined. */
export function parseKeyslotLine(output: string, verb: "unlocked" | "created"): number | undefined {
  const m = new RegExp(`^Key slot (\\d+) ${verb}\\.`, "m").exec(output);
  return m ? Number(m[1]) : undefined;
}

/** MappingStatus is what `cryptsetup status NAME` says about a device-mapper mapping. */
export interface MappingStatus {
  active: boolean;
  /** type is the mapping type ("LUKS2", "LUKS1", "PLAIN"…) when active. */
  type?: string;
  /** device is the backing device holding the data (and, without a detached header, the header). */
  device?: string;
}

/** parseStatus parses `cryptsetup status NAME` output (C locale). */
export function parseStatus(output: string): MappingStatus {
  const active = /^\S+ is active/m.test(output);
  const type = /^\s*type:\s*(\S+)/m.exec(output)?.[1];
  const device = /^\s*device:\s*(\S+)/m.exec(output)?.[1];
  return { active, ...(type ? { type } : {}), ...(device ? { device } : {}) };
}

/**
 * parseKeyslotIDs returns the sorted IDs of the keyslots in `cryptsetup luksDump
 * --dump-json-metadata` output; throws SyntaxError/TypeError on anything else.
 */
export function parseKeyslotIDs(json: string): number[] {
  const meta = JSON.parse(json) as { keyslots?: Record<string, unknown> };
  if (typeof meta !== "object" || meta === null || typeof meta.keyslots !== "object" || meta.keyslots === null) {
    throw new TypeError("LUKS2 metadata has no keyslots object");
  }
  return Object.keys(meta.keyslots)
    .map((k) => Number(k))
    .filter((n) => Number.isInteger(n) && n >= 0)
    .sort((a, b) => a - b);
}
