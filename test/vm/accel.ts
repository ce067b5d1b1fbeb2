/**
 * Choosing QEMU's accelerator. /dev/kvm existing proves little: under nested virtualization KVM
 * may refuse MSRs (QEMU aborts: "failed to set MSR 0x10a"), stop with a KVM internal error, or
 * hang. So KVM is used only after a real boot with it reached the initramfs (AM-PROBE-OK within
 * probeTimeoutMs); otherwise TCG with `-cpu max,aes=off`: without AES-NI the guest kernel never
 * loads aesni_intel, whose ~20 cryptd algorithm registrations each run a failing modprobe through
 * the usermode helper, which under TCG made the first `cryptsetup open` of every boot ~4 s slower
 * (6.5 s → 2.9 s measured). The verdict is cached per host boot
 * (/proc/sys/kernel/random/boot_id), kernel and QEMU binary; AM_VM_ACCEL=kvm|tcg skips the probe.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import type { Kernel } from "./kernel.js";

/** Accel is the accelerator and the matching -cpu value. */
export interface Accel {
  name: "kvm" | "tcg";
  cpu: string;
  /** why says how it was chosen, e.g. the probe's failure. */
  why: string;
}

/** qemuBinary is the emulator every VM runs. */
export const qemuBinary = "qemu-system-x86_64";

const probeTimeoutMs = 15_000;
const tcg = (why: string): Accel => ({ name: "tcg", cpu: "max,aes=off", why });
const kvm = (why: string): Accel => ({ name: "kvm", cpu: "host", why });

function probeKvm(kernel: Kernel, initrd: string): Promise<{ ok: boolean; detail: string }> {
  const args = ["-accel", "kvm", "-cpu", "host", "-M", "q35", "-m", "256", "-nodefaults", "-no-user-config", "-nographic",
    "-no-reboot", "-serial", "stdio", "-kernel", kernel.vmlinuz, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 am.probe=1"];
  return new Promise((resolve) => {
    const child = spawn(qemuBinary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => done(false, `no AM-PROBE-OK within ${probeTimeoutMs} ms`), probeTimeoutMs);
    const onData = (d: Buffer) => {
      out = (out + d.toString()).slice(-4000);
      if (out.includes("AM-PROBE-OK")) done(true, "probe boot reached the initramfs");
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) => done(false, err.message));
    child.on("exit", (code, signal) => {
      if (!out.includes("AM-PROBE-OK")) done(false, `QEMU exited (${signal ?? code}): ${lastLine(out)}`);
    });
  });
}

const lastLine = (s: string): string =>
  s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").split(/\r?\n/).map((l) => l.trim()).filter(Boolean).slice(-2).join(" | ");

/**
 * chooseAccel returns the accelerator to use: `forced` if given, TCG without a usable /dev/kvm,
 * else the (cached) probe's verdict.
 */
export async function chooseAccel(kernel: Kernel, initrd: string, cacheDir: string, forced?: "kvm" | "tcg"): Promise<Accel> {
  if (forced === "kvm") return kvm("AM_VM_ACCEL=kvm");
  if (forced === "tcg") return tcg("AM_VM_ACCEL=tcg");
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return tcg("no usable /dev/kvm");
  }
  const qemuPath = ["/usr/bin", "/usr/local/bin"].map((d) => join(d, qemuBinary)).find(existsSync) ?? qemuBinary;
  const bootId = existsSync("/proc/sys/kernel/random/boot_id") ? readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() : "";
  const qemuId = existsSync(qemuPath) ? `${statSync(qemuPath).size}:${statSync(qemuPath).mtimeMs}` : "";
  const key = createHash("sha256").update(`${bootId}\n${kernel.vmlinuz}\n${qemuId}`).digest("hex").slice(0, 16);
  const file = join(cacheDir, `accel-${key}.json`);
  if (existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, "utf8")) as Accel;
    const base = cached.name === "kvm" ? kvm(cached.why) : tcg(cached.why);
    return { ...base, why: `${cached.why} (cached for this host boot)` };
  }
  const r = await probeKvm(kernel, initrd);
  const accel = r.ok ? kvm(`KVM probe: ${r.detail}`) : tcg(`KVM probe failed, TCG fallback: ${r.detail}`);
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(accel));
  renameSync(`${file}.${process.pid}.tmp`, file);
  return accel;
}
