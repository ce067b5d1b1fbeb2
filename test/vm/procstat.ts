/**
 * Reading a process's CPU time and I/O from /proc, on the host (a QEMU process) and in a guest (a
 * daemon, through the agent). These are the VM tier's progress signals: a guest process whose CPU
 * time or read bytes advance is slow, not stuck.
 */
import { existsSync, readFileSync } from "node:fs";

/** ProcStats is a process's CPU time and read traffic so far. */
export interface ProcStats {
  /** cpuS is user + system time in seconds. */
  cpuS: number;
  /** rchar is bytes read through read(2)-like calls (for QEMU: 9p and disk traffic it served). */
  rchar: number;
  /** syscr counts read system calls. */
  syscr: number;
}

/** clockTicks is USER_HZ, 100 on every Linux x86-64 build. */
const clockTicks = 100;

/** parseProcStat returns utime + stime in seconds from /proc/<pid>/stat's text; the comm field may hold spaces and parentheses. */
export function parseProcStat(text: string): number {
  const rest = text.slice(text.lastIndexOf(")") + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`not a /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 80))}`);
  return (utime + stime) / clockTicks;
}

/** parseProcIo returns rchar and syscr from /proc/<pid>/io's text (0 when a field is missing). */
export function parseProcIo(text: string): { rchar: number; syscr: number } {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return { rchar: field("rchar"), syscr: field("syscr") };
}

/** hostProcStats reads a host process's stats, or undefined when it is gone. */
export function hostProcStats(pid: number | undefined): ProcStats | undefined {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return undefined;
  try {
    const cpuS = parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
    return { cpuS, ...parseProcIo(readFileSync(`/proc/${pid}/io`, "utf8")) };
  } catch {
    return undefined;
  }
}

/**
 * guestStatsScript is a bash snippet for the agent that prints the stat line, a separator line
 * "--", and the io text of the process whose pid is in `pidFile`; it exits 1 when it is gone.
 */
export const guestStatsScript = (pidFile: string): string =>
  `p=$(cat ${pidFile}) && cat /proc/$p/stat && echo -- && cat /proc/$p/io`;

/** parseGuestStats parses guestStatsScript's output. */
export function parseGuestStats(out: string): ProcStats {
  const [stat = "", io = ""] = out.split("\n--\n");
  return { cpuS: parseProcStat(stat), ...parseProcIo(io) };
}
