/**
 * The VM test tier's harness: QEMU VMs booted from the host's Debian kernel with the host's root
 * shared read-only over 9p (so the guest has node, this checkout at the same path, and every
 * Debian tool), each with its own vTPM (swtpm, /dev/tpmrm0), raw disk (/dev/vda), tap on a bridge
 * in a namespace the harness made, and serial console log.
 *
 * API, as a test uses it:
 *
 *   const reason = canRunVM();                          // env.ts; skip the file when defined
 *   const cluster = await VmCluster.create();           // kernel, initramfs (cached), KVM-or-TCG, namespace
 *   const [a, b] = await cluster.startAll([{ name: "a" }, { name: "b", diskMiB: 256 }]);
 *   await a.run("modprobe wireguard");                  // bash in the guest as root; throws unless exit 0
 *   const r = await a.exec("tpm2_pcrread sha256:11");   // { stdout, stderr, exitCode } whatever the status
 *   const meshd = await a.spawn("meshd", `node ${repoRoot}/bin/meshd.js --vpn kernel --attestation tpm ` +
 *     `--tpm device --disk /dev/vda --listen 0.0.0.0:9000 --public-ip ${a.ip}`);  // background, log in meshd.log()
 *   await cluster.network.waitForPort(a.ip, 9000, 60_000, () => meshd.log());     // polled from the admin namespace
 *   await cluster.admin("node", [`${repoRoot}/bin/meshctl.js`, "activate", "--coordinator", `${a.ip}:9000`, …]);
 *   await a.reboot();                                   // same disk image, same TPM state; services restart
 *   await cluster.destroy();                            // afterAll; also runs on exit and SIGINT/SIGTERM
 *
 * Addresses: admin namespace 198.18.1.1 (cluster.network.adminIp, cluster.network.ns), VMs 198.18.1.2
 * and up in start order (vm.ip). Guest side: /run/vm is the VM's share (vm.shareDir on the host),
 * /tmp, /run, /var/lib, /var/tmp are tmpfs (empty after each boot), everything else is the host's,
 * read-only, as of boot time (cached: rebuild dist/ before starting VMs). node, bin/, dist/, proto/,
 * the native addon and node_modules come from the program image (image.ts, /dev/vdb, bound over the
 * same paths; AM_VM_IMAGE=0 leaves them on 9p). Modules virtio_net and virtio_blk are loaded at
 * boot; others with `modprobe` (or VmOptions.modules).
 *
 * Waiting on a guest daemon: `await meshd.waitFor("meshd to serve", check, { stallMs, maxMs })` polls
 * `check` while the daemon makes progress (log, CPU time, reads) and fails fast when it stalls;
 * `await vm.diagnose()` (log tails, ps from the guest, console tail) explains any failure.
 *
 * Every wait is bounded; a VM that does not boot, exits, or runs a command past its timeout makes
 * the call reject with a VmError carrying the serial console's tail.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { chooseAccel, type Accel } from "./accel.js";
import { registerCluster } from "./cleanup.js";
import { hostProblem, vmEnv } from "./env.js";
import { findExecutable } from "../../src/wireguard/exec.js";
import { buildProgramImage, imageEntries, type ProgramImage } from "./image.js";
import { buildInitramfs } from "./initramfs.js";
import { findKernel, type Kernel } from "./kernel.js";
import { Vm, type VmOptions } from "./machine.js";
import { VmNetwork, type ExecResult } from "./network.js";

export { Vm, type BootTiming, type VmOptions } from "./machine.js";
export type { GuestResult } from "./agent.js";
export type { GuestProcess } from "./guest-process.js";
export { VmError } from "./wait.js";

/** repoRoot is this checkout's absolute path, the same in the guest (the host root is shared at /). */
export const repoRoot = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/**
 * canRunVM returns why VM tests cannot run here (see env.ts, and no bootable kernel), or undefined
 * when they can. With AM_REQUIRE_VM=1 it throws instead, so CI on a capable host cannot silently skip.
 */
export function canRunVM(): string | undefined {
  let reason = hostProblem();
  if (!reason) {
    try {
      findKernel(vmEnv().kernel);
    } catch (err) {
      reason = (err as Error).message;
    }
  }
  if (reason && vmEnv().require) throw new Error(`VM tests required (AM_REQUIRE_VM=1) but cannot run: ${reason}`);
  return reason;
}

/** guestPath is the agent's PATH (agent.ts): the node a guest runs is the first on it. */
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function guestNode(): string {
  const node = findExecutable("node", guestPath);
  if (!node) throw new Error(`no node on the guests' PATH (${guestPath})`);
  return node;
}

/** ClusterInfo says what the cluster runs on, for logs and reports. */
export interface ClusterInfo {
  kernel: Kernel;
  accel: Accel;
  initrd: string;
  initrdBuilt: boolean;
  /** image is the program image (image.ts), undefined with AM_VM_IMAGE=0. */
  image: ProgramImage | undefined;
  setupMs: number;
}

/** VmCluster owns VMs, their network namespace and work dir. destroy() is idempotent and never throws. */
export class VmCluster {
  readonly vms: Vm[] = [];
  /** image is the program image's path every VM attaches, or undefined. */
  readonly image: string | undefined;
  private destroyed = false;
  private readonly unregister: () => void;

  private constructor(
    readonly kernel: Kernel,
    readonly initrd: string,
    readonly accel: Accel,
    /** network is the admin namespace with the bridge; run programs there with admin() or network.exec(). */
    readonly network: VmNetwork,
    /** workDir holds every VM's disk, TPM state, share and logs; removed by destroy() unless AM_VM_KEEP=1. */
    readonly workDir: string,
    readonly info: ClusterInfo,
  ) {
    this.image = info.image?.path;
    this.unregister = registerCluster(this);
  }

  /** create picks the kernel, builds (or reuses) the initramfs, chooses KVM or TCG and makes the namespace. */
  static async create(): Promise<VmCluster> {
    const t0 = Date.now();
    const env = vmEnv();
    const kernel = findKernel(env.kernel);
    const initramfs = buildInitramfs(kernel, env.cacheDir);
    const accel = await chooseAccel(kernel, initramfs.path, env.cacheDir, env.accel);
    const image = env.programImage ? buildProgramImage(imageEntries(repoRoot, guestNode()), env.cacheDir) : undefined;
    const network = VmNetwork.create();
    let workDir: string;
    try {
      workDir = mkdtempSync(join(tmpdir(), "am-vm-"));
      if (!env.keepWorkDir) network.attachDir(workDir);
    } catch (err) {
      network.destroy();
      throw err;
    }
    const info = { kernel, accel, initrd: initramfs.path, initrdBuilt: initramfs.built, image, setupMs: Date.now() - t0 };
    return new VmCluster(kernel, initramfs.path, accel, network, workDir, info);
  }

  /** add makes a VM (tap, disk, TPM dir) without booting it. */
  add(options: VmOptions): Vm {
    if (this.destroyed) throw new Error("vm cluster already destroyed");
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(options.name) || this.vms.some((v) => v.name === options.name)) {
      throw new Error(`vm name ${JSON.stringify(options.name)}: want a unique [a-z][a-z0-9-]* hostname`);
    }
    const vm = new Vm(this, options, this.network.addTap());
    this.vms.push(vm);
    return vm;
  }

  /** start adds a VM and boots it. */
  async start(options: VmOptions): Promise<Vm> {
    const vm = this.add(options);
    await vm.start();
    return vm;
  }

  /** startAll boots several VMs in parallel; if any fails, it rejects after all settled (the others keep running). */
  async startAll(options: readonly VmOptions[]): Promise<Vm[]> {
    const vms = options.map((o) => this.add(o));
    const results = await Promise.allSettled(vms.map((v) => v.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    return vms;
  }

  /** admin runs a program in the admin namespace (which reaches every VM's address). */
  admin(file: string, args: readonly string[], options?: { input?: string; timeoutMs?: number; reject?: boolean }): Promise<ExecResult> {
    return this.network.exec(file, args, options);
  }

  /** destroy stops every VM (power cut), deletes the namespace and removes the work dir. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.allSettled(this.vms.map((v) => v.stop({ graceful: false })));
    this.destroySync();
  }

  /** destroySync is destroy() for exit handlers: SIGKILL, namespace, work dir. */
  destroySync(): void {
    this.destroyed = true;
    this.unregister();
    for (const v of this.vms) v.killSync();
    this.network.destroy();
    if (vmEnv().keepWorkDir) process.stderr.write(`vm harness: kept ${this.workDir} (AM_VM_KEEP=1)\n`);
    else rmSync(this.workDir, { recursive: true, force: true });
  }
}
