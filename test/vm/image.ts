/**
 * The guests' read-only program image: node and this checkout's runtime files (bin/, dist/, proto/,
 * the native addon, node_modules) in an ext4 file system attached to every guest as a second
 * virtio-blk disk (serial `amimg`; /dev/vda stays the state disk). The initramfs mounts it at
 * /run/am-img and bind-mounts each entry over the same path of the 9p host root.
 *
 * Why (issue 9, measured): starting meshd in a TCG guest that reads node and ~3,000 module files
 * over 9p cost each guest tens of CPU seconds of 9p round trips (one per walk/getattr/open/read/
 * clunk, each a virtio exit emulated by TCG); from a block device the same files come from the
 * guest's page cache after a few large virtio-blk reads.
 *
 * The image holds each entry at its real path (symlinks resolved: node_modules is often a link),
 * plus `.am-binds`, the list of those paths. Images are cached in the cache dir as
 * prog-<key>.ext4, key = a hash of every input file's path, size, mode and mtime (tsc and git
 * rewrite what they change, so a rebuilt dist/ gives a new key), and rebuilt when it changes.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { findTool } from "./env.js";

/** imageSerial is the virtio-blk serial the guest finds the image by. */
export const imageSerial = "amimg";

/** bindsFile is the image's list of paths to bind-mount, one absolute path a line. */
export const bindsFile = ".am-binds";

const formatVersion = "am-prog-image-1";

/** ProgramImage is a built (or cached) image. */
export interface ProgramImage {
  path: string;
  /** entries are the absolute paths the guest binds from the image. */
  entries: string[];
  built: boolean;
  /** bytes is the image file's apparent size. */
  bytes: number;
}

/**
 * imageEntries returns the real paths of what a guest needs to run bin/meshd.js and bin/meshctl.js
 * from `repoRoot` with `node`: the node binary, bin/, dist/, proto/, package.json, the built native
 * addon and node_modules. Missing optional entries (proto/, the addon) are left out.
 */
export function imageEntries(repoRoot: string, nodeBinary: string): string[] {
  const wanted = [nodeBinary, ...["bin", "dist", "proto", "package.json", "native/build/Release", "node_modules"].map((p) => join(repoRoot, p))];
  const out = new Set<string>();
  for (const p of wanted) if (existsSync(p)) out.add(realpathSync(p));
  // An entry inside another is bound with it.
  return [...out].filter((p) => ![...out].some((q) => q !== p && p.startsWith(`${q}/`))).sort();
}

/**
 * skipped says whether a path stays out of the image and its key: tool caches inside node_modules
 * (.vite holds vitest's results, rewritten by every test run), which no guest reads.
 */
export const skipped = (p: string): boolean => /\/node_modules\/\.(?!bin$)[^/]+$/.test(p);

/** treeKey hashes the path, type, mode, size and mtime of everything under `entries` (symlinks by target). */
export function treeKey(entries: readonly string[]): string {
  const h = createHash("sha256").update(formatVersion);
  const visit = (p: string) => {
    const s = lstatSync(p);
    if (s.isSymbolicLink()) h.update(`L ${p} ${readlinkSync(p)}\n`);
    else if (s.isDirectory()) {
      h.update(`D ${p} ${s.mode}\n`);
      for (const name of readdirSync(p).sort()) if (!skipped(join(p, name))) visit(join(p, name));
    } else h.update(`F ${p} ${s.mode} ${s.size} ${s.mtimeMs}\n`);
  };
  for (const e of entries) visit(e);
  return h.digest("hex").slice(0, 16);
}

function duBytes(p: string): number {
  const s = lstatSync(p);
  if (!s.isDirectory()) return s.isFile() ? s.size : 0;
  let n = 4096;
  for (const name of readdirSync(p)) if (!skipped(join(p, name))) n += duBytes(join(p, name)) + 256;
  return n;
}

/**
 * buildProgramImage returns the cached image of `entries`, building it when an input changed.
 * Safe from parallel processes (temp name, rename). Needs mke2fs (e2fsprogs); no mount, no loop device.
 */
export function buildProgramImage(entries: readonly string[], cacheDir: string): ProgramImage {
  const key = treeKey(entries);
  const path = join(cacheDir, `prog-${key}.ext4`);
  if (existsSync(path)) return { path, entries: [...entries], built: false, bytes: statSync(path).size };
  const mke2fs = findTool("mke2fs");
  if (!mke2fs) throw new Error("mke2fs not found (install e2fsprogs)");
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const stage = mkdtempSync(join(cacheDir, "prog-stage-"));
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    let bytes = 0;
    for (const e of entries) {
      mkdirSync(join(stage, dirname(e)), { recursive: true });
      cpSync(e, join(stage, e), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, filter: (src) => !skipped(src) });
      bytes += duBytes(e);
    }
    writeFileSync(join(stage, bindsFile), `${entries.join("\n")}\n`);
    // Room for ext4's metadata and per-file block slack; the file is sparse, unused space costs nothing.
    const sizeMiB = Math.ceil((bytes * 1.3) / 2 ** 20) + 64;
    // No journal and no metadata checksums: read-only, and crc32c would need a module the initramfs lacks.
    const r = spawnSync(mke2fs, ["-q", "-F", "-t", "ext4", "-O", "^has_journal,^metadata_csum", "-m", "0", "-L", imageSerial,
      "-E", "root_owner=0:0", "-d", stage, tmp, `${sizeMiB}M`], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mke2fs -d ${stage}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
    renameSync(tmp, path);
  } finally {
    rmSync(stage, { recursive: true, force: true });
    rmSync(tmp, { force: true });
  }
  // Images of older inputs: drop them once nobody can still be booting one.
  const dayAgo = Date.now() - 86_400_000;
  for (const f of readdirSync(cacheDir)) {
    const p = join(cacheDir, f);
    if (f.startsWith("prog-") && p !== path && statSync(p).mtimeMs < dayAgo) rmSync(p, { recursive: true, force: true });
  }
  return { path, entries: [...entries], built: true, bytes: statSync(path).size };
}
