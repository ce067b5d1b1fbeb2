/**
 * Bounded waiting and the VM tier's errors. Every wait has a deadline; a VM error carries the tail
 * of the guest's serial console, which is where a guest that never booted says why.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";

/** VmErrorKind says what went wrong: a deadline passed, the VM is not running, or a guest command failed. */
export type VmErrorKind = "timeout" | "exited" | "failed";

/**
 * VmError is any harness failure that involves a guest. `serialTail` holds the console's last lines
 * (also in the message). A retry does not help a "failed" or "exited" error; a "timeout" may pass
 * on a less loaded machine.
 */
export class VmError extends Error {
  constructor(
    readonly kind: VmErrorKind,
    message: string,
    readonly serialTail: string,
    options?: { cause?: unknown },
  ) {
    super(serialTail ? `${message}\n--- serial console (last lines) ---\n${serialTail}` : message, options);
    this.name = "VmError";
  }
}

/** sleep resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** WaitOptions bound a poll. */
export interface WaitOptions {
  timeoutMs: number;
  /** intervalMs between checks; undefined: 100. */
  intervalMs?: number;
  /** what is waited for, for the timeout message ("vm1 to boot"); a function is called at the deadline. */
  what: string | (() => string);
  /** detail adds context to the timeout message (a serial tail, a log). */
  detail?: () => string;
  /** abort is checked before each try; a string it returns aborts the wait with that reason. */
  abort?: () => string | undefined;
}

/**
 * waitUntil calls `check` until it returns a value other than undefined, and resolves with it.
 * It rejects with a VmError("timeout") after timeoutMs, or VmError("exited") when `abort` says so;
 * errors thrown by `check` propagate.
 */
export async function waitUntil<T>(check: () => Promise<T | undefined> | T | undefined, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const aborted = options.abort?.();
    const what = () => (typeof options.what === "string" ? options.what : options.what());
    if (aborted !== undefined) throw new VmError("exited", `gave up waiting for ${what()}: ${aborted}`, options.detail?.() ?? "");
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) {
      throw new VmError("timeout", `timed out after ${options.timeoutMs} ms waiting for ${what()}`, options.detail?.() ?? "");
    }
    await sleep(options.intervalMs ?? 100);
  }
}

/** tailLines returns the last `lines` lines of a text file (at most its last 64 KiB), ANSI escapes and CRs removed. */
export function tailLines(path: string, lines = 40, fromOffset = 0): string {
  if (!existsSync(path)) return `(no ${path})`;
  const size = statSync(path).size;
  const start = Math.max(fromOffset, size - 65_536);
  const buf = Buffer.alloc(Math.max(0, size - start));
  const fd = openSync(path, "r");
  try {
    readSync(fd, buf, 0, buf.length, start);
  } finally {
    closeSync(fd);
  }
  return buf
    .toString("utf8")
    .replace(/\x1b(\[[0-9;?]*[A-Za-z]|c)/g, "")
    .replace(/\r/g, "")
    .split("\n")
    .slice(-lines)
    .join("\n")
    .trim();
}

/** ProgressWaitOptions bound a wait on something that reports progress. */
export interface ProgressWaitOptions {
  /** what is waited for ("meshd on coord to serve"). */
  what: string;
  /** stallMs: fail once `progress` has returned the same value for this long. */
  stallMs: number;
  /** maxMs: fail after this long however much progress there is. */
  maxMs: number;
  /** intervalMs between checks; undefined: 250. */
  intervalMs?: number;
  /** progressEveryMs: how often `progress` is sampled; undefined: 5000. */
  progressEveryMs?: number;
  /**
   * progress returns a value that changes whenever the awaited party makes progress (log bytes,
   * CPU time); undefined counts as no progress (e.g. the guest did not answer).
   */
  progress: () => Promise<string | undefined> | string | undefined;
  /** abort is checked before each try; a string it returns aborts the wait with that reason. */
  abort?: () => string | undefined;
  /** diagnose is called once on failure; its text ends the error message. */
  diagnose?: () => Promise<string> | string;
}

/**
 * waitWithProgress calls `check` until it returns a value other than undefined, and resolves
 * with it. It rejects with a VmError("timeout") when `progress` has not changed for stallMs
 * ("stalled") or maxMs passed, and VmError("exited") when `abort` says so; the message says how
 * long it waited and ends with `diagnose`'s text. Errors thrown by `check` propagate.
 */
export async function waitWithProgress<T>(check: () => Promise<T | undefined> | T | undefined, o: ProgressWaitOptions): Promise<T> {
  const start = Date.now();
  let last: string | undefined;
  let lastChange = start;
  let nextSample = start;
  const fail = async (kind: VmErrorKind, why: string): Promise<never> => {
    let diag = "";
    try {
      diag = (await o.diagnose?.()) ?? "";
    } catch (err) {
      diag = `(diagnosis failed: ${(err as Error).message})`;
    }
    throw new VmError(kind, `${why}${diag ? `\n${diag}` : ""}`, "");
  };
  for (;;) {
    const aborted = o.abort?.();
    if (aborted !== undefined) return fail("exited", `gave up waiting for ${o.what} after ${Date.now() - start} ms: ${aborted}`);
    const v = await check();
    if (v !== undefined) return v;
    const now = Date.now();
    if (now >= nextSample) {
      nextSample = now + (o.progressEveryMs ?? 5_000);
      const p = await o.progress();
      if (p !== undefined && p !== last) {
        last = p;
        lastChange = Date.now();
      }
    }
    if (Date.now() - lastChange >= o.stallMs) {
      return fail("timeout", `stalled: no progress for ${o.stallMs} ms waiting for ${o.what} (waited ${Date.now() - start} ms; last progress: ${last ?? "none"})`);
    }
    if (Date.now() - start >= o.maxMs) return fail("timeout", `timed out after ${o.maxMs} ms waiting for ${o.what} (still progressing: ${last ?? "none"})`);
    await sleep(o.intervalMs ?? 250);
  }
}
