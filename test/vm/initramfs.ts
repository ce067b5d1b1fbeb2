/**
 * The guest's initramfs: Debian's busybox (plus its shared libraries when it is not the static
 * build), the uncompressed 9p modules, and an /init that
 * 1. loads the virtio_pci (when not built in), 9p, virtio_net and virtio_blk modules and, for the accelerator probe (`am.probe=1`),
 *    prints AM-PROBE-OK and powers off; sets the hostname (am.name) and eth0's address (am.ip);
 * 2. mounts the host's root read-only over virtio-9p (tag `hostroot`), tmpfs on /tmp, /run, /var/lib
 *    and /var/tmp, fresh proc/sys/devtmpfs/devpts, and this VM's read-write share (tag `vmshare`) at
 *    /run/vm;
 * 3. moves the host root onto / and chroots into it (what switch_root does, minus deleting the
 *    initramfs's files, which took busybox seconds under TCG), then runs `/bin/bash /run/vm/agent.sh`
 *    as PID 1 (agent.ts). PID 1 still shares its fs_struct with the kernel threads then, so the
 *    kernel's usermode helpers (request_module → /sbin/modprobe, used by dm-crypt and
 *    `ip link add … type wireguard`) find the host's modprobe.
 * Any failure prints "am-init: FAILED: …" on the console and powers off, so QEMU exits at once.
 *
 * Kernel command line keys read by /init: am.name, am.ip (CIDR), am.probe=1, am.rootcache=loose|none
 * (9p cache mode of the host root; loose is much faster but does not see host files changed after boot),
 * am.keep=DIR, am.img=1 (mount the program image, image.ts, over the 9p paths it lists; before the
 * agent starts, so its bind mounts are everywhere).
 *
 * Images are cached in the cache dir as initramfs-<kernel version>-<hash of every input>.cpio and
 * rebuilt whenever an input (busybox, a library, a module, this script) changes.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { cpioNewc, type CpioEntry } from "./cpio.js";
import { findTool } from "./env.js";
import { bindsFile, imageSerial } from "./image.js";
import { moduleClosure, readModule, type Kernel } from "./kernel.js";

/** shareTags are the 9p mount tags /init expects (QEMU's -device virtio-9p-pci,mount_tag=…). */
export const shareTags = { root: "hostroot", vm: "vmshare" } as const;

/** guestShareDir is where the VM's read-write share is mounted in the guest. */
export const guestShareDir = "/run/vm";

const formatVersion = "am-initramfs-4";
// Loaded by busybox from the initramfs: much cheaper under TCG than modprobe reading the 9p root.
// ext4 reads the program image (image.ts); it needs a crc32c implementation even without metadata checksums.
const stage1Modules = ["virtio_pci", "9pnet_virtio", "9p", "virtio_net", "virtio_blk", "crc32c_generic", "ext4"];

function initScript(modules: readonly string[]): string {
  return `#!/bin/busybox sh
# attested-mesh VM stage 1 (test/vm/initramfs.ts)
B=/bin/busybox
export PATH=/bin
$B mount -t proc proc /proc
say() { echo "am-init: $* (uptime $($B cut -d' ' -f1 /proc/uptime)s)"; }
die() { say "FAILED: $*"; $B sync; $B poweroff -f; $B sleep 10; }
say "stage 1"
for m in ${modules.join(" ")}; do $B insmod /lib/modules/$m.ko || die "insmod $m"; done
cache=loose; addr=; name=vm; keep=; img=
for a in $($B cat /proc/cmdline); do
  case "$a" in
    am.img=1) img=1;;
    am.keep=*) keep="\${a#am.keep=}";;
    am.probe=1) say "AM-PROBE-OK"; $B poweroff -f; $B sleep 10;;
    am.rootcache=*) cache="\${a#am.rootcache=}";;
    am.ip=*) addr="\${a#am.ip=}";;
    am.name=*) name="\${a#am.name=}";;
  esac
done
$B hostname "$name"
$B ip link set lo up || die "lo up"
if [ -n "$addr" ]; then $B ip address add "$addr" dev eth0 && $B ip link set eth0 up || die "eth0 $addr"; fi
R=/newroot
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=$cache ${shareTags.root} $R || die "mount host root over 9p"
$B mount -t proc proc $R/proc && $B mount -t sysfs sys $R/sys && $B mount -t devtmpfs dev $R/dev || die "mount proc, sys, dev"
# am.keep: a host directory (the checkout) that must stay visible even under a tmpfs below.
if [ -n "$keep" ]; then $B mkdir -p /keep && $B mount --bind $R$keep /keep || die "hold $keep"; fi
$B mount -t tmpfs -o mode=1777 tmpfs $R/tmp || die "tmpfs on /tmp"
for d in run var/lib; do $B mount -t tmpfs -o mode=0755 tmpfs $R/$d || die "tmpfs on /$d"; done
$B mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp || die "tmpfs on /var/tmp"
if [ -n "$keep" ]; then $B mkdir -p $R$keep && $B mount --move /keep $R$keep || die "keep $keep"; fi
# am.img=1: the program image (virtio-blk serial ${imageSerial}) over the 9p paths it lists.
if [ -n "$img" ]; then
  dev=
  for s in $R/sys/block/vd*/serial; do [ "$($B cat $s)" = ${imageSerial} ] && dev=\${s%/serial} && dev=\${dev##*/}; done
  [ -n "$dev" ] || die "no disk with serial ${imageSerial}"
  [ "$dev" != vda ] || die "the program image is vda (the state disk must be)"
  I=$R/run/am-img
  $B mkdir -p $I && $B mount -t ext4 -o ro $R/dev/$dev $I || die "mount the program image $dev"
  while read -r p; do $B mount --bind $I$p $R$p || die "bind $p from the program image"; done < $I/${bindsFile}
  say "program image $dev bound over $($B wc -l < $I/${bindsFile}) paths"
fi
$B mkdir -p $R/dev/pts $R/dev/shm $R${guestShareDir}
$B mount -t devpts devpts $R/dev/pts && $B mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm || die "mount devpts, shm"
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ${shareTags.vm} $R${guestShareDir} || die "mount the VM share over 9p"
[ -f $R${guestShareDir}/agent.sh ] || die "no ${guestShareDir}/agent.sh"
say "entering the host root"
$B umount -l /proc
cd $R && $B mount --move . / || die "move the host root onto /"
exec $B chroot . /bin/bash ${guestShareDir}/agent.sh
`;
}

interface Inputs {
  busybox: string;
  libs: string[];
  modules: { name: string; path: string }[];
  init: string;
}

/** sharedLibraries lists what `ldd` says `binary` loads, or [] for a static binary. */
function sharedLibraries(binary: string): string[] {
  const r = spawnSync("ldd", [binary], { encoding: "utf8" });
  if (r.status !== 0) {
    if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) return [];
    throw new Error(`ldd ${binary}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  }
  return [...r.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]);
}

function gatherInputs(kernel: Kernel): Inputs {
  const busybox = findTool("busybox");
  if (!busybox) throw new Error("busybox not found (install busybox or busybox-static)");
  const modules = moduleClosure(kernel, stage1Modules);
  return { busybox: realpathSync(busybox), libs: sharedLibraries(busybox), modules, init: initScript(modules.map((m) => m.name)) };
}

function cacheKey(kernel: Kernel, inputs: Inputs): string {
  const h = createHash("sha256").update(formatVersion).update(kernel.version).update(inputs.init);
  for (const f of [inputs.busybox, ...inputs.libs, ...inputs.modules.map((m) => m.path)]) {
    h.update(f).update(readFileSync(f));
  }
  return h.digest("hex").slice(0, 16);
}

function build(inputs: Inputs): Buffer {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const dir = (p: string) => {
    if (p === "/" || p === "." || dirs.has(p)) return;
    dir(dirname(p));
    dirs.add(p);
    entries.push({ kind: "dir", path: p });
  };
  for (const d of ["/bin", "/dev", "/proc", "/sys", "/tmp", "/newroot", "/lib/modules"]) dir(d);
  entries.push({ kind: "char", path: "/dev/console", major: 5, minor: 1 });
  entries.push({ kind: "file", path: "/bin/busybox", data: readFileSync(inputs.busybox), mode: 0o755 });
  for (const lib of inputs.libs) {
    dir(dirname(lib));
    entries.push({ kind: "file", path: lib, data: readFileSync(lib), mode: 0o755 });
  }
  for (const m of inputs.modules) entries.push({ kind: "file", path: `/lib/modules/${m.name}.ko`, data: readModule(m.path) });
  entries.push({ kind: "file", path: "/init", data: Buffer.from(inputs.init), mode: 0o755 });
  return cpioNewc(entries);
}

/** Initramfs is a built image. */
export interface Initramfs {
  path: string;
  /** built is false when the image came from the cache. */
  built: boolean;
}

/**
 * buildInitramfs returns the cached image for `kernel`, building it first when an input changed.
 * Safe to call from parallel processes: images are written to a temp name and renamed into place.
 */
export function buildInitramfs(kernel: Kernel, cacheDir: string): Initramfs {
  const inputs = gatherInputs(kernel);
  const key = cacheKey(kernel, inputs);
  const name = `initramfs-${kernel.version}-${key}.cpio`;
  const path = join(cacheDir, name);
  if (existsSync(path)) return { path, built: false };
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, build(inputs));
  renameSync(tmp, path);
  // Images for this kernel made from older inputs: drop them once nobody can still be booting one.
  const dayAgo = Date.now() - 86_400_000;
  for (const f of readdirSync(cacheDir)) {
    if (f.startsWith(`initramfs-${kernel.version}-`) && f !== name && statSync(join(cacheDir, f)).mtimeMs < dayAgo) {
      rmSync(join(cacheDir, f), { force: true });
    }
  }
  return { path, built: true };
}
