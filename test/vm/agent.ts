/**
 * The guest agent and its host side. The agent is a bash script the host writes into the VM's
 * share dir before each boot; /init runs it as PID 1 (after it set up eth0 and the mounts). It
 * loads extra kernel modules (am.modules=a,b), writes `ready` (the guest's uptime), and then runs
 * every command file that appears:
 *
 *   host writes  cmd/<id>.tmp, renames it to cmd/<id>.sh   (first line "#am-timeout=<seconds>")
 *   agent        runs `bash cmd/<id>.sh` as its own process group, stdout/stderr in cmd/<id>.out/.err,
 *                then writes the exit status to cmd/<id>.rc; a watchdog kills the group after the
 *                timeout (TERM, KILL 5 s later) and writes cmd/<id>.timedout and rc 124
 *   host         reads the result and removes the files
 *
 * Commands run concurrently, as root, with the host root read-only and /tmp, /run, /var/lib,
 * /var/tmp on tmpfs. The share is 9p without caching, so each side sees the other's writes at once.
 * Under TCG every exec of a host binary costs ~100 ms, so the agent's loop uses bash builtins only
 * (no mv, no timeout(1)): a command costs two forks of bash (command, watchdog) and one exec.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { guestShareDir } from "./initramfs.js";
import { VmError, waitUntil } from "./wait.js";

/** GuestResult is a finished guest command. */
export interface GuestResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** agentScript is the agent's source (bash). */
export const agentScript = `#!/bin/bash
# attested-mesh VM agent, PID 1 in the host root (test/vm/agent.ts)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb TPM2TOOLS_TCTI=device:/dev/tpmrm0
S=${guestShareDir}
read -r up _ < /proc/uptime
echo "am-agent: stage 2 (uptime \${up}s)"
read -r cmdline < /proc/cmdline
for a in $cmdline; do case "$a" in am.modules=*) modules=\${a#am.modules=};; esac; done
if [ -n "$modules" ]; then modprobe -a \${modules//,/ } || echo "am-agent: modprobe -a $modules failed"; fi
read -r up _ < /proc/uptime
echo "$up" > $S/ready
echo "am-agent: AM-READY after \${up}s"
mkfifo /run/am-agent.tick && exec 9<> /run/am-agent.tick  # read -t on it is a sleep without a fork
set -m  # each command is its own process group, so the watchdog can kill all of it
shopt -s nullglob
declare -A seen
n=0
idle=0
while :; do
  busy=0
  for f in $S/cmd/*.sh; do
    id=\${f%.sh}
    [[ -n \${seen[$id]} ]] && continue
    seen[$id]=1 busy=1
    read -r header < "$f"
    t=\${header#\\#am-timeout=}
    d=/run/am-agent.done.$((++n))  # guest-local: the host removes the share files once it has read them
    ( exec < /dev/null > "$id.out" 2> "$id.err"; bash "$f" 9<&-; echo $? > "$id.rc"; : > $d ) &
    j=$!
    ( exec > /dev/null 2>&1
      for ((i = 0; i < t * 5; i++)); do [[ -e $d ]] && exit 0; read -t 0.2 -u 9; done
      echo > "$id.timedout"; kill -TERM -- -$j
      for ((i = 0; i < 25; i++)); do kill -0 -- -$j || break; read -t 0.2 -u 9; done
      kill -KILL -- -$j; [[ -e $d ]] || echo 124 > "$id.rc" ) &
  done
  jobs -n > /dev/null  # reap job notifications quietly
  # Poll every 50 ms while commands come in, every 250 ms after 2 s without one (idle TCG CPU).
  if ((busy)); then idle=0; elif ((idle < 40)); then ((++idle)); fi
  if ((idle < 40)); then read -t 0.05 -u 9 _; else read -t 0.25 -u 9 _; fi
done
`;

/** ExecOptions bound one guest command. */
export interface ExecOptions {
  /** timeoutMs: the guest kills the command after this (→ VmError "timeout"); undefined: 60000. */
  timeoutMs?: number;
}

let sequence = 0;

/**
 * AgentClient is the host side of one VM's agent. exec() may be called concurrently; prepare()
 * must not overlap a boot.
 */
export class AgentClient {
  private readonly cmdDir: string;

  constructor(
    /** shareDir is the host directory QEMU shares as `vmshare`. */
    readonly shareDir: string,
    private readonly context: { name: string; abort: () => string | undefined; serialTail: () => string },
  ) {
    this.cmdDir = join(shareDir, "cmd");
  }

  /** prepare writes agent.sh (or `replacement`, for failure tests) and clears the last boot's ready file and commands. */
  prepare(replacement?: string): void {
    mkdirSync(this.shareDir, { recursive: true });
    rmSync(join(this.shareDir, "ready"), { force: true });
    rmSync(this.cmdDir, { recursive: true, force: true });
    mkdirSync(this.cmdDir);
    writeFileSync(join(this.shareDir, "agent.sh"), replacement ?? agentScript, { mode: 0o755 });
  }

  /** readyUptimeS is the guest uptime (seconds) at which the agent became ready in this boot, or undefined. */
  readyUptimeS(): number | undefined {
    const p = join(this.shareDir, "ready");
    const m = existsSync(p) ? /^(\d+(\.\d+)?)\n$/.exec(readFileSync(p, "utf8")) : null;
    return m ? Number(m[1]) : undefined;
  }

  /** exec runs a bash script in the guest and resolves with its result, whatever its exit status. */
  async exec(script: string, options: ExecOptions = {}): Promise<GuestResult> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const id = `${process.pid}-${++sequence}`;
    const base = join(this.cmdDir, id);
    writeFileSync(`${base}.tmp`, `#am-timeout=${Math.max(1, Math.ceil(timeoutMs / 1000))}\n${script}\n`);
    renameSync(`${base}.tmp`, `${base}.sh`);
    const read = (ext: string) => (existsSync(`${base}.${ext}`) ? readFileSync(`${base}.${ext}`, "utf8") : "");
    const summary = () => `\`${firstLine(script)}\` on ${this.context.name}`;
    try {
      // The agent writes rc with one write(2); until then the file may exist but be empty.
      const rc = await waitUntil(() => /^\d+\n$/.exec(read("rc"))?.[0], {
        timeoutMs: timeoutMs + 15_000,
        intervalMs: 50,
        what: () => `${summary()} to finish${existsSync(`${base}.out`) ? "" : " (the agent never picked it up)"}`,
        abort: this.context.abort,
        detail: this.context.serialTail,
      });
      const result = { stdout: read("out"), stderr: read("err"), exitCode: Number(rc) };
      if (existsSync(`${base}.timedout`)) {
        throw new VmError("timeout", `${summary()} timed out after ${timeoutMs} ms; stdout: ${tail(result.stdout)}; stderr: ${tail(result.stderr)}`, this.context.serialTail());
      }
      return result;
    } finally {
      for (const ext of ["sh", "out", "err", "rc", "timedout"]) rmSync(`${base}.${ext}`, { force: true });
    }
  }
}

const firstLine = (s: string): string => {
  const l = s.trim().split("\n")[0] ?? "";
  return l.length > 80 ? `${l.slice(0, 77)}...` : l;
};
const tail = (s: string): string => JSON.stringify(s.slice(-500));
