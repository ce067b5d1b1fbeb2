/**
 * One boot of one VM: its swtpm and its QEMU, both started inside the admin namespace through
 * `ip netns exec <ns> setpriv --pdeathsig KILL …` (no fork in between, so the child's pid is the
 * program's), which makes the kernel SIGKILL them if the test process dies without cleaning up.
 *
 * swtpm keeps the TPM's state in the VM's TPM dir (which outlives the boot); QEMU talks to it over
 * a unix control socket (`-tpmdev emulator`, `-device tpm-crb`: the guest gets /dev/tpm0 and
 * /dev/tpmrm0). The host root is shared read-only (`-fsdev local,path=/,readonly=on,
 * multidevs=remap`), the VM's share dir read-write, the disk image is /dev/vda (virtio-blk), the
 * program image (image.ts) a read-only second virtio-blk disk, the
 * NIC (virtio-net) sits on the VM's tap, and the serial console is appended to a log file.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";

import { qemuBinary, type Accel } from "./accel.js";
import { imageSerial } from "./image.js";
import { shareTags } from "./initramfs.js";
import type { Kernel } from "./kernel.js";
import type { Tap } from "./network.js";
import { sleep, tailLines, waitUntil } from "./wait.js";

/** BootSpec is everything one boot needs; all paths are absolute and belong to the caller. */
export interface BootSpec {
  name: string;
  /** ns is the admin namespace QEMU and swtpm run in. */
  ns: string;
  kernel: Kernel;
  initrd: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  /** dir holds sockets and the qemu/swtpm logs. */
  dir: string;
  diskPath: string;
  /** imagePath is the read-only program image (image.ts), shared by every VM; undefined: none. */
  imagePath?: string;
  tpmStateDir: string;
  shareDir: string;
  serialLog: string;
  tap: Tap;
  /** kernelArgs are appended to the kernel command line. */
  kernelArgs: readonly string[];
}

const qboot = "/usr/share/qemu/qboot.rom";

/** qemuArgs returns QEMU's argument list for `spec` (exported for tests and debugging). */
export function qemuArgs(spec: BootSpec, swtpmSocket: string): string[] {
  // no_timer_check: the kernel's IO-APIC timer test counts ticks over a short busy wait; a vCPU
  // descheduled on a loaded host misses them and the boot panics ("IO-APIC + timer doesn't work!").
  const append = ["console=ttyS0", "quiet", "panic=-1", "no_timer_check", ...spec.kernelArgs].join(" ");
  return [
    "-name", spec.name, "-accel", spec.accel.name, "-cpu", spec.accel.cpu, "-M", "q35",
    "-m", String(spec.memoryMiB), "-smp", String(spec.cpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
    // qboot (qemu-system-data) starts a -kernel boot faster than SeaBIOS; both work.
    ...(existsSync(qboot) ? ["-bios", qboot] : []),
    "-kernel", spec.kernel.vmlinuz, "-initrd", spec.initrd, "-append", append,
    "-chardev", `file,id=serial0,path=${spec.serialLog},append=on`, "-serial", "chardev:serial0",
    "-fsdev", `local,id=fsroot,path=/,readonly=on,multidevs=remap,security_model=none`,
    "-device", `virtio-9p-pci,fsdev=fsroot,mount_tag=${shareTags.root}`,
    "-fsdev", `local,id=fsvm,path=${spec.shareDir},multidevs=remap,security_model=none`,
    "-device", `virtio-9p-pci,fsdev=fsvm,mount_tag=${shareTags.vm}`,
    // The state disk first, so it is /dev/vda; the program image (serial amimg) comes after it.
    "-drive", `file=${spec.diskPath},format=raw,if=none,id=state,cache=writeback`,
    "-device", "virtio-blk-pci,drive=state,serial=amstate",
    ...(spec.imagePath ? ["-drive", `file=${spec.imagePath},format=raw,if=none,id=prog,readonly=on`, "-device", `virtio-blk-pci,drive=prog,serial=${imageSerial}`] : []),
    "-netdev", `tap,id=net0,ifname=${spec.tap.tap},script=no,downscript=no`,
    "-device", `virtio-net-pci,netdev=net0,mac=${spec.tap.mac}`,
    "-chardev", `socket,id=chrtpm,path=${swtpmSocket}`,
    "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-crb,tpmdev=tpm0",
  ];
}

function startInNs(ns: string, program: string, args: readonly string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn("ip", ["netns", "exec", ns, "setpriv", "--pdeathsig", "KILL", program, ...args], {
      stdio: ["ignore", fd, fd],
    });
    child.on("error", () => undefined); // reported through exitCode/signalCode and the log
    return child;
  } finally {
    closeSync(fd);
  }
}

const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (!running(child)) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  if (graceMs > 0) {
    child.kill("SIGTERM");
    await Promise.race([exited, sleep(graceMs)]);
  }
  if (running(child)) {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  }
}

/**
 * QemuBoot is one running boot. stop() is idempotent; killSync() is for exit handlers. Not safe
 * for concurrent stop() calls with different `graceful` values (the first wins).
 */
export class QemuBoot {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly spec: BootSpec,
    private readonly swtpm: ChildProcess,
    private readonly qemu: ChildProcess,
  ) {}

  /** start launches swtpm, waits for its control socket, then launches QEMU (it does not wait for the guest). */
  static async start(spec: BootSpec): Promise<QemuBoot> {
    const sock = join(spec.dir, "swtpm.sock");
    rmSync(sock, { force: true });
    const swtpmLog = join(spec.dir, "swtpm.log");
    const swtpm = startInNs(spec.ns, "swtpm", [
      "socket", "--tpm2", "--tpmstate", `dir=${spec.tpmStateDir}`,
      "--ctrl", `type=unixio,path=${sock}`, "--log", `file=${swtpmLog},level=1`,
    ], swtpmLog);
    try {
      await waitUntil(() => (existsSync(sock) ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 20,
        what: `swtpm of ${spec.name} to create ${sock}`,
        abort: () => (running(swtpm) ? undefined : `swtpm exited (${swtpm.exitCode ?? swtpm.signalCode})`),
        detail: () => tailLines(swtpmLog, 10),
      });
    } catch (err) {
      await terminate(swtpm, 0);
      throw err;
    }
    const qemu = startInNs(spec.ns, qemuBinary, qemuArgs(spec, sock), join(spec.dir, "qemu.log"));
    return new QemuBoot(spec, swtpm, qemu);
  }

  /** qemuPid is QEMU's host pid (for its CPU time and I/O, see procstat.ts). */
  get qemuPid(): number | undefined {
    return this.qemu.pid;
  }

  /** exitReason says why the boot is over ("QEMU exited with code 1: …"), or undefined while QEMU runs. */
  exitReason(): string | undefined {
    if (running(this.qemu)) return undefined;
    const how = this.qemu.signalCode ? `by signal ${this.qemu.signalCode}` : `with code ${this.qemu.exitCode}`;
    const log = tailLines(join(this.spec.dir, "qemu.log"), 5).replace(/\n/g, " | ");
    return `QEMU exited ${how}${log ? `: ${log}` : ""}`;
  }

  /** exited resolves when QEMU has exited. */
  exited(): Promise<void> {
    return running(this.qemu) ? new Promise((r) => this.qemu.once("exit", () => r())) : Promise.resolve();
  }

  /**
   * stop ends the boot: QEMU first (SIGTERM lets it flush the disk; graceful=false is a power cut),
   * then swtpm (SIGTERM: it saves its volatile state). The TPM and disk files stay.
   */
  stop(graceful = true): Promise<void> {
    return (this.stopping ??= (async () => {
      await terminate(this.qemu, graceful ? 5_000 : 0);
      await terminate(this.swtpm, 2_000);
    })());
  }

  /** killSync SIGKILLs both processes without waiting (for process exit and signal handlers). */
  killSync(): void {
    for (const c of [this.qemu, this.swtpm]) if (running(c)) c.kill("SIGKILL");
  }
}
