/**
 * swtpm test helper: one `swtpm socket` TPM 2.0 per simulated peer, on free loopback ports, with its
 * state in a fresh temp dir. Every process and temp dir is removed by stop(), by stopAllSwtpm() (run
 * automatically after each test file), and, for whatever is left, on process exit and SIGINT/SIGTERM.
 */
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { execa, type ResultPromise } from "execa";
import { afterAll } from "vitest";
import { Tpm } from "../../src/attestation/native.js";
import type { MeasurementPolicy } from "../../src/attestation/policy.js";
import { provisionSimulatedTpm, type AKKind } from "../../src/attestation/tpm-provision.js";
import { registerCleanup } from "../../src/localmesh/cleanup.js";
import { freePortPair } from "./ports.js";

/** Swtpm is one running swtpm; `tcti` is what Tpm.open / openTPM take. */
export interface Swtpm {
  host: string;
  /** port is the TPM command port; ctrlPort (= port + 1, as tpm2-tss's swtpm TCTI requires) the control port. */
  port: number;
  ctrlPort: number;
  /** pid is the swtpm process's (it holds the listening sockets on port and ctrlPort). */
  pid: number | undefined;
  /** stateDir is the absolute directory holding the TPM's state (removed by stop()). */
  stateDir: string;
  /** tcti is "swtpm:host=127.0.0.1,port=N". */
  tcti: string;
  /** stop terminates swtpm (SIGTERM, then SIGKILL after 2 s) and removes stateDir. Idempotent. */
  stop(): Promise<void>;
  /**
   * powerOff terminates swtpm but keeps stateDir, so startSwtpm({ stateDir }) boots the same TPM
   * again (same keys and NV, PCRs reset: a reboot). The caller then owns stateDir.
   */
  powerOff(): Promise<void>;
}

const host = "127.0.0.1";
const readyTimeoutMs = 10_000;
const maxStartAttempts = 5;
const setpriv = "/usr/bin/setpriv";

interface Running {
  child: ResultPromise;
  stateDir: string;
  stop(): Promise<void>;
}
const running = new Set<Running>();



/**
 * exchange sends `request` to 127.0.0.1:port and resolves with `ok` of the first `length` bytes of
 * the answer; false on an error, a closed connection or no answer within 5 s (generous: a probe cut
 * off mid-command under load is a risk of its own).
 */
function exchange(port: number, request: Buffer, length: number, ok: (answer: Buffer) => boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let got = Buffer.alloc(0);
    const done = (v: boolean) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(5000, () => done(false));
    sock.once("error", () => done(false));
    sock.once("close", () => done(false));
    sock.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= length) done(ok(got));
    });
    sock.connect(port, host, () => sock.write(request));
  });
}

/** probe sends TPM2_GetRandom(8) and resolves true if the TPM answers with TPM_RC_SUCCESS. */
const probe = (port: number): Promise<boolean> =>
  exchange(port, Buffer.from("80010000000c0000017b0008", "hex"), 10, (a) => a.readUInt16BE(0) === 0x8001 && a.readUInt32BE(6) === 0);

/**
 * probeCtrl sends swtpm's control command CMD_GET_CAPABILITY and resolves true on its 8-byte answer
 * with result 0: the control port is this swtpm's (regression: a swtpm that lost its control port
 * to another one's server port passed the TPM probe, and the TCTI then waited on that other
 * swtpm's busy server until the test timed out).
 */
const probeCtrl = (port: number): Promise<boolean> => exchange(port, Buffer.from("00000001", "hex"), 8, (a) => a.readUInt32BE(0) === 0);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * listensOn resolves true when process `pid` holds the listening TCP socket on 127.0.0.1:`port`
 * (the socket's inode from /proc/net/tcp among the process's open files). Regression: two swtpm
 * started at once were handed the same free port; the one that lost the bind had not exited yet
 * when its probes reached the winner, so two simulated peers shared one TPM (its three object
 * slots: a seal failed with TPM_RC_OBJECT_MEMORY, and PCR markers would mix).
 */
export async function listensOn(pid: number | undefined, port: number): Promise<boolean> {
  if (pid === undefined) return false;
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set(
    (await readFile("/proc/net/tcp", "utf8"))
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === local && f[3] === "0A") // 0A: LISTEN
      .map((f) => `socket:[${f[9]}]`),
  );
  if (inodes.size === 0) return false;
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) if (inodes.has(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ""))) return true;
  return false;
}

async function startOnce(keepDir?: string): Promise<Swtpm | "port-taken"> {
  const stateDir = keepDir ?? (await mkdtemp(join(tmpdir(), "swtpm-")));
  const port = await freePortPair();
  const ctrlPort = port + 1;
  const logFile = join(stateDir, "swtpm.log");
  // swtpm in the foreground (no --daemon): the child handle is the process to stop. Absolute state
  // path regardless, since swtpm resolves it after any chdir. setpriv makes the kernel SIGKILL swtpm
  // if this process dies without running any handler (SIGKILL, OOM): no orphan survives a test run.
  const [command, ...prefix] = existsSync(setpriv) ? [setpriv, "--pdeathsig", "KILL", "swtpm"] : ["swtpm"];
  const child = execa(
    command,
    [
      ...prefix,
      "socket", "--tpm2",
      "--tpmstate", `dir=${stateDir}`,
      "--server", `type=tcp,port=${port},bindaddr=${host}`,
      "--ctrl", `type=tcp,port=${ctrlPort},bindaddr=${host}`,
      "--flags", "not-need-init,startup-clear",
      "--log", `file=${logFile},level=1`,
    ],
    { reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe", cleanup: true },
  );
  let exited = false;
  void child.then(() => (exited = true));

  let stopped: Promise<void> | undefined;
  let keepState = false;
  const entry: Running = {
    child,
    stateDir,
    stop: () =>
      (stopped ??= (async () => {
        running.delete(entry);
        if (!exited) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
          await child;
          clearTimeout(timer);
        }
        if (!keepState) await rm(stateDir, { recursive: true, force: true });
      })()),
  };
  const powerOff = async (): Promise<void> => {
    keepState = true;
    await entry.stop();
  };
  running.add(entry);
  registerCleanup(killAllSync);

  const deadline = Date.now() + readyTimeoutMs;
  let ctrlDeadline = Date.now() + 2000;
  for (;;) {
    if (exited) {
      const r = await child;
      // With --log file=, swtpm writes its errors there rather than to stderr.
      const log = await readFile(logFile, "utf8").catch(() => "");
      await entry.stop();
      const msg = `${r.stderr ?? ""}\n${log}`.trim();
      if (/address already in use|bind/i.test(msg)) return "port-taken";
      const why = r.failed && r.exitCode === undefined ? r.shortMessage : `exit code ${r.exitCode}: ${msg}`;
      throw new Error(`swtpm exited before it was ready (${why})`);
    }
    if (await probe(port)) {
      if (await probeCtrl(ctrlPort)) {
        // Both answer; they must be this swtpm's, not another one's that won the ports.
        if ((await listensOn(child.pid, port)) && (await listensOn(child.pid, ctrlPort))) break;
        await entry.stop();
        return "port-taken";
      }
      // The TPM answers but the control port is not this swtpm's: take other ports.
      if (Date.now() > ctrlDeadline) {
        await entry.stop();
        return "port-taken";
      }
    } else ctrlDeadline = Date.now() + 2000;
    if (Date.now() > deadline) {
      await entry.stop();
      throw new Error(`swtpm on ${host}:${port} did not answer TPM commands within ${readyTimeoutMs} ms`);
    }
    await sleep(25);
  }
  return { host, port, ctrlPort, pid: child.pid, stateDir, tcti: `swtpm:host=${host},port=${port}`, stop: entry.stop, powerOff };
}

/** StartSwtpmOptions: a state dir to boot again, and how to provision the AK (default: ECC, like meshd does). */
export interface StartSwtpmOptions {
  stateDir?: string;
  /** provision lists the AK kinds to provision in NV (provisionSimulatedTpm); false: a bare TPM with no AK in NV. */
  provision?: readonly AKKind[] | false;
}

/**
 * startSwtpm starts a TPM 2.0 simulator (in options.stateDir when given: a reboot of a TPM that was
 * powered off) (`swtpm socket`, started up with TPM2_Startup(CLEAR)), resolves once it answers a TPM
 * command, and provisions it like a GCE vTPM (AK template and test-CA AK certificate in NV) unless
 * options.provision is false. Ports come from the OS; a collision is retried.
 */
export async function startSwtpm(options: StartSwtpmOptions = {}): Promise<Swtpm> {
  for (let i = 0; i < maxStartAttempts; i++) {
    const s = await startOnce(options.stateDir);
    if (s === "port-taken") continue;
    if (options.provision !== false && !(await provisionWithin(s, options.provision ?? ["ecc"], options.stateDir === undefined ? provisionTimeoutMs : undefined))) continue;
    return s;
  }
  throw new Error(`swtpm: ports were taken on each of ${maxStartAttempts} attempts`);
}

/** provisionTimeoutMs bounds provisioning a fresh swtpm (milliseconds when all is well). */
const provisionTimeoutMs = 30_000;

/**
 * provisionWithin provisions `s`, within timeoutMs when given; past it, the swtpm is stopped (its
 * state removed) and false returned, for a retry on a new swtpm. Under load (CI, 2 cores, VMs
 * beside) a swtpm now and then stops answering one of several concurrent test peers' connections;
 * the TCTI waits without a deadline, so without this the test hung until its own timeout. Stopping
 * the swtpm ends the waiting call with an error. Only for a fresh TPM: a caller's state dir (a
 * reboot, the VM harness) is never cut off mid-write (an NV index defined but not written would be
 * taken as provisioned); such callers bound the time themselves.
 */
async function provisionWithin(s: Swtpm, kinds: readonly AKKind[], timeoutMs: number | undefined): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const work = (async () => {
    const tpm = await Tpm.open(s.tcti);
    try {
      await provisionSimulatedTpm(tpm, { kinds });
    } finally {
      await tpm.close().catch(() => {});
    }
  })();
  if (timeoutMs === undefined) {
    await work;
    return true;
  }
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), timeoutMs)));
  try {
    if ((await Promise.race([work.then(() => "done" as const), late])) === "done") return true;
  } finally {
    clearTimeout(timer);
  }
  process.stderr.write(`swtpm on port ${s.port} did not finish provisioning within ${timeoutMs} ms: starting another one\n`);
  await s.stop();
  await work.catch(() => {});
  return false;
}

/** swtpmPCRs are the PCRs a fresh swtpm shows as zeros and swtpmPolicy pins: the boot chain 0-10. */
export const swtpmPCRs: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/**
 * swtpmPolicy is the measurement policy of a fresh swtpm: PCRs 0-10 all zeros (nothing booted), and
 * the simulated TPM's test CA allowed (tpm.allowTestRoot). `pcrs` overrides pinned values.
 */
export function swtpmPolicy(pcrs: Record<number, string> = {}): MeasurementPolicy & { tpm: NonNullable<MeasurementPolicy["tpm"]> } {
  const map = new Map(swtpmPCRs.map((i) => [i, "00".repeat(32)]));
  for (const [k, v] of Object.entries(pcrs)) map.set(Number(k), v);
  return { tpm: { pcrs: map, allowTestRoot: true } };
}

/** stopAllSwtpm stops every swtpm this process started and removes their state dirs. */
export async function stopAllSwtpm(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop()));
}

/** killAllSync is the last resort on exit and signals (src/localmesh/cleanup.ts runs it): SIGKILL every swtpm, remove its state dir. */
function killAllSync(): void {
  for (const r of running) {
    try {
      r.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    rmSync(r.stateDir, { recursive: true, force: true });
  }
  running.clear();
}

// Inside a vitest file, stop this file's swtpms after its tests even if a test forgot to.
try {
  afterAll(stopAllSwtpm);
} catch {
  // imported outside a vitest collection phase: the exit and signal handlers still clean up
}
