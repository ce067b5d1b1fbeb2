/**
 * The VM tier's environment: the one place that reads environment variables, and the check that
 * says whether VM tests can run here.
 *
 * Variables (all optional):
 * - AM_VM_ACCEL=kvm|tcg   force an accelerator instead of probing KVM (nested KVM often fails).
 * - AM_VM_KERNEL=PATH     boot this vmlinuz; its modules must be in /lib/modules/<version from the name>.
 * - AM_VM_CACHE=DIR       initramfs and probe cache (default /var/cache/attested-mesh-vm when root).
 * - AM_VM_KEEP=1          keep each cluster's work dir (disks, TPM state, logs) and print its path.
 * - AM_VM_IMAGE=0         no program image (image.ts): guests read node and the checkout over 9p (slow; for measuring).
 * - AM_REQUIRE_VM=1       fail instead of skipping when VM tests cannot run (for CI on capable hosts).
 */
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

import { findExecutable } from "../../src/wireguard/exec.js";

/** VmEnv is the parsed environment of the VM tier. */
export interface VmEnv {
  /** accel forces an accelerator; undefined: probe KVM, fall back to TCG. */
  accel: "kvm" | "tcg" | undefined;
  /** kernel is a vmlinuz path to boot; undefined: pick one (see kernel.ts). */
  kernel: string | undefined;
  /** cacheDir holds built initramfs images and the accelerator probe result. */
  cacheDir: string;
  /** keepWorkDir keeps disks, TPM state and logs after destroy(). */
  keepWorkDir: boolean;
  /** require turns "cannot run" into an error instead of a skip. */
  require: boolean;
  /** programImage attaches the program image (image.ts); false only with AM_VM_IMAGE=0. */
  programImage: boolean;
}

/** vmEnv reads the environment once per call; callers keep the result. */
export function vmEnv(): VmEnv {
  const e = process.env;
  const accel = e.AM_VM_ACCEL;
  if (accel !== undefined && accel !== "" && accel !== "kvm" && accel !== "tcg") {
    throw new Error(`AM_VM_ACCEL must be kvm or tcg, got ${JSON.stringify(accel)}`);
  }
  return {
    accel: accel === "kvm" || accel === "tcg" ? accel : undefined,
    kernel: e.AM_VM_KERNEL || undefined,
    cacheDir: e.AM_VM_CACHE || defaultCacheDir(),
    keepWorkDir: e.AM_VM_KEEP === "1",
    require: e.AM_REQUIRE_VM === "1",
    programImage: e.AM_VM_IMAGE !== "0",
  };
}

function defaultCacheDir(): string {
  const system = "/var/cache/attested-mesh-vm";
  try {
    mkdirSync(system, { recursive: true, mode: 0o700 });
    accessSync(system, constants.W_OK);
    return system;
  } catch {
    return join(tmpdir(), "attested-mesh-vm");
  }
}

/** findTool returns the absolute path of program `name` on PATH or in the sbin dirs, or undefined. */
export function findTool(name: string): string | undefined {
  return findExecutable(name, [process.env.PATH ?? "", "/usr/local/sbin", "/usr/sbin", "/sbin"].join(delimiter));
}

/** requiredTools maps each program the VM tier runs on the host to its Debian package. */
export const requiredTools: ReadonlyArray<readonly [tool: string, pkg: string]> = [
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["swtpm", "swtpm"],
  ["busybox", "busybox or busybox-static"],
  ["ip", "iproute2"],
  ["setpriv", "util-linux"],
  ["mke2fs", "e2fsprogs"],
];

/**
 * hostProblem returns why this host cannot run VMs (platform, root, a program, /dev/net/tun), or
 * undefined. The kernel is checked by canRunVM (vm.ts), which also honours AM_REQUIRE_VM.
 */
export function hostProblem(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") return `needs Linux on x86-64, this is ${process.platform}/${process.arch}`;
  if (process.getuid?.() !== 0) return "needs root (network namespaces, taps, /boot/vmlinuz-*)";
  for (const [tool, pkg] of requiredTools) {
    if (!findTool(tool)) return `${tool} not found (install ${pkg})`;
  }
  if (!existsSync("/dev/net/tun")) return "no /dev/net/tun";
  return undefined;
}
