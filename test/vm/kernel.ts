/**
 * Picking the guest kernel and reading its modules.
 *
 * The guest boots a Debian kernel from the host's /boot with the host's root as its root, so the
 * kernel's modules must be the host's /lib/modules/<version>. Choice, in order:
 * 1. AM_VM_KERNEL (a vmlinuz path; the version is what follows "vmlinuz-" in its name);
 * 2. /boot/vmlinuz-$(uname -r), when that version's modules include wireguard;
 * 3. the newest /boot/vmlinuz-<version> whose modules include wireguard (a host running a kernel it
 *    has no vmlinuz for, e.g. in a container or a microVM, boots whatever Debian installed; an -rt
 *    kernel is as good as any for these tests).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { release } from "node:os";
import { basename, join } from "node:path";
import { gunzipSync } from "node:zlib";

import { findTool } from "./env.js";

/** Kernel is a bootable kernel image and its module tree. */
export interface Kernel {
  /** version is the kernel release (`uname -r` inside the guest). */
  version: string;
  /** vmlinuz is the image QEMU loads with -kernel. */
  vmlinuz: string;
  /** modulesDir is /lib/modules/<version>. */
  modulesDir: string;
  /** why says how this kernel was chosen (for logs and reports). */
  why: string;
}

/** KernelModule is one module file to load, in dependency order. */
export interface KernelModule {
  name: string;
  /** path is absolute; it may be compressed (.ko.xz, .ko.gz). */
  path: string;
}

const norm = (name: string): string => name.replace(/-/g, "_");
const moduleName = (file: string): string => norm(basename(file).replace(/\.ko(\.(xz|gz|zst))?$/, ""));

function hasWireguard(modulesDir: string): boolean {
  for (const index of ["modules.dep", "modules.builtin"]) {
    const p = join(modulesDir, index);
    if (existsSync(p) && /(^|\/)wireguard\.ko/m.test(readFileSync(p, "utf8"))) return true;
  }
  return false;
}

/** findKernel picks the kernel to boot (see the file comment) or throws naming every candidate it rejected. */
export function findKernel(override?: string): Kernel {
  const candidate = (vmlinuz: string, why: string): Kernel => {
    const version = basename(vmlinuz).replace(/^vmlinuz-/, "");
    return { version, vmlinuz, modulesDir: join("/lib/modules", version), why };
  };
  if (override) {
    const k = candidate(override, "AM_VM_KERNEL");
    if (!existsSync(k.vmlinuz)) throw new Error(`AM_VM_KERNEL=${override}: no such file`);
    if (!hasWireguard(k.modulesDir)) throw new Error(`AM_VM_KERNEL=${override}: ${k.modulesDir} has no wireguard module`);
    return k;
  }
  const running = release();
  const versions = existsSync("/boot") ? readdirSync("/boot").filter((f) => f.startsWith("vmlinuz-")).map((f) => f.slice(8)) : [];
  const rejected: string[] = [];
  const usable = versions.filter((v) => {
    const ok = hasWireguard(join("/lib/modules", v));
    if (!ok) rejected.push(`${v} (no wireguard module in /lib/modules/${v})`);
    return ok;
  });
  if (usable.includes(running)) return candidate(`/boot/vmlinuz-${running}`, "the running kernel");
  const newest = usable.sort((a, b) => b.localeCompare(a, "en", { numeric: true }))[0];
  if (newest) {
    return candidate(`/boot/vmlinuz-${newest}`, `newest /boot kernel with wireguard (running ${running} has no usable /boot image)`);
  }
  throw new Error(
    `no bootable kernel: want /boot/vmlinuz-<v> with a wireguard module in /lib/modules/<v>; ` +
      `found ${versions.length ? rejected.join(", ") : "no /boot/vmlinuz-*"} (install linux-image-amd64)`,
  );
}

/** isBuiltin says whether `name` is compiled into the kernel (then there is nothing to load). */
export function isBuiltin(kernel: Kernel, name: string): boolean {
  const p = join(kernel.modulesDir, "modules.builtin");
  return existsSync(p) && readFileSync(p, "utf8").split("\n").some((l) => l && moduleName(l) === norm(name));
}

/** moduleClosure returns `names` and their dependencies, dependencies first, without builtins or repeats. */
export function moduleClosure(kernel: Kernel, names: readonly string[]): KernelModule[] {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of readFileSync(join(kernel.modulesDir, "modules.dep"), "utf8").split("\n")) {
    const [file, rest] = line.split(":");
    if (!file || rest === undefined) continue;
    deps.set(moduleName(file), { path: join(kernel.modulesDir, file), deps: rest.trim().split(/\s+/).filter(Boolean).map(moduleName) });
  }
  const out: KernelModule[] = [];
  const seen = new Set<string>();
  const visit = (raw: string, chain: string[]) => {
    const name = norm(raw);
    if (seen.has(name)) return;
    const entry = deps.get(name);
    if (!entry) {
      if (isBuiltin(kernel, name)) return;
      throw new Error(`kernel ${kernel.version}: no module ${name}${chain.length ? ` (needed by ${chain.join(" <- ")})` : ""}`);
    }
    seen.add(name);
    for (const d of entry.deps) visit(d, [name, ...chain]);
    out.push({ name, path: entry.path });
  };
  for (const n of names) visit(n, []);
  return out;
}

/** readModule returns a module's ELF bytes; busybox insmod cannot load compressed modules. */
export function readModule(path: string): Buffer {
  if (path.endsWith(".gz")) return gunzipSync(readFileSync(path));
  if (!path.endsWith(".xz") && !path.endsWith(".zst")) return readFileSync(path);
  const xz = findTool("xz");
  const [file, args] = path.endsWith(".zst") ? ["zstd", ["-dc", path]] : xz ? [xz, ["-dc", path]] : ["busybox", ["unxz", "-c", path]];
  const r = spawnSync(file, args, { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`decompress ${path}: ${r.stderr?.toString().trim() || String(r.error)}`);
  return r.stdout;
}
