/**
 * Test helpers for LUKS headers on plain files: fast formatting (pbkdf2 with 1000 iterations —
 * argon2's benchmark takes seconds), temp dirs that are always removed, and an independent check
 * that a key opens a header by passing it as a key *file* (the DESIGN.md contract: the key is
 * the whole key-file content), not through the code under test.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, expect } from "vitest";
import type { PBKDFOptions } from "../../src/diskencryption/cryptsetup.js";
import { DiskError } from "../../src/diskencryption/errors.js";

/** fastPBKDF makes keyslots in milliseconds; for tests only (weak). */
export const fastPBKDF: PBKDFOptions = { type: "pbkdf2", iterations: 1000 };

const fastPBKDFArgs = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/** haveCryptsetup says whether `cryptsetup` runs here (tests skip otherwise). */
export function haveCryptsetup(): boolean {
  try {
    execFileSync("cryptsetup", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return requireOrSkip("cryptsetup");
  }
}

/**
 * requireOrSkip is what a missing tool means for a test: a skip on a developer's machine, but with
 * AM_REQUIRE_E2E=1 (the test command sets it: setup installed everything) a failure, so nothing
 * skipped can pass as tested.
 */
export function requireOrSkip(what: string): false {
  if (process.env.AM_REQUIRE_E2E === "1") throw new Error(`${what} is required (AM_REQUIRE_E2E=1) but missing: run scripts/setup.sh as root`);
  return false;
}

/** haveStrace says whether `strace` runs here with fault injection (ptrace allowed). */
export function haveStrace(): boolean {
  try {
    execFileSync("strace", ["-qq", "-o", "/dev/null", "-e", "inject=getpid:retval=1", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return requireOrSkip("strace (with fault injection)");
  }
}

/** TempDir is a private (0700) directory; cleanup() removes it with everything inside. */
export interface TempDir {
  dir: string;
  cleanup(): Promise<void>;
}

/** makeTempDir creates a private temp dir. */
export async function makeTempDir(prefix = "am-disk-test-"): Promise<TempDir> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** LUKSFile is a LUKS header on a file in its own temp dir, with the key it was formatted with. */
export interface LUKSFile extends TempDir {
  /** path of the image file. */
  path: string;
  /** initialKeyFile holds `initialKey` as its whole content (mode 0600). */
  initialKeyFile: string;
  initialKey: Buffer;
}

/** LUKSFileOptions tune {@link createLUKSFile}. */
export interface LUKSFileOptions {
  /** type of the header (default luks2). */
  type?: "luks1" | "luks2";
  /** sizeMiB of the file (default 32; a LUKS2 header takes 16). */
  sizeMiB?: number;
  /** initialKey (default 32 random bytes). */
  initialKey?: Uint8Array;
  /** keyslotsSize is `--luks2-keyslots-size` (e.g. "256k" leaves room for one keyslot only). */
  keyslotsSize?: string;
  /** uuid is `--uuid` (a host making a disk that claims another's identity). */
  uuid?: string;
}

/**
 * createLUKSFile formats a fresh file (`truncate` + `cryptsetup luksFormat --batch-mode` with fast
 * pbkdf2) in a new temp dir. The dir is removed if formatting fails; callers must call cleanup().
 */
export async function createLUKSFile(opts: LUKSFileOptions = {}): Promise<LUKSFile> {
  const tmp = await makeTempDir();
  try {
    const path = join(tmp.dir, "disk.img");
    const initialKeyFile = join(tmp.dir, "initial.key");
    const initialKey = Buffer.from(opts.initialKey ?? randomBytes(32));
    await writeFile(initialKeyFile, initialKey, { mode: 0o600 });
    await execa("truncate", ["-s", `${opts.sizeMiB ?? 32}M`, path]);
    const type = opts.type ?? "luks2";
    const extra = type === "luks1" ? ["--pbkdf-force-iterations", "1000"] : [...fastPBKDFArgs];
    if (opts.keyslotsSize) extra.push("--luks2-keyslots-size", opts.keyslotsSize);
    if (opts.uuid) extra.push("--uuid", opts.uuid);
    await execa("cryptsetup", ["luksFormat", "--type", type, "--batch-mode", ...extra, "--key-file", initialKeyFile, path], {
      stdin: "ignore",
    });
    return { ...tmp, path, initialKeyFile, initialKey };
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
}

/** createPlainFile makes a zero-filled file without any header in a new temp dir. */
export async function createPlainFile(sizeMiB = 8): Promise<TempDir & { path: string }> {
  const tmp = await makeTempDir();
  const path = join(tmp.dir, "plain.img");
  await execa("truncate", ["-s", `${sizeMiB}M`, path]);
  return { ...tmp, path };
}

/**
 * opensWithKeyFile says whether `key`, written as a whole key file, opens `path`
 * (`cryptsetup open --test-passphrase --key-file`). Independent of src/diskencryption.
 */
export async function opensWithKeyFile(path: string, key: Uint8Array): Promise<boolean> {
  const tmp = await makeTempDir("am-disk-check-");
  try {
    const keyFile = join(tmp.dir, "k");
    await writeFile(keyFile, key, { mode: 0o600 });
    const r = await execa("cryptsetup", ["open", "--test-passphrase", "--key-file", keyFile, path], { reject: false, stdin: "ignore" });
    if (r.exitCode !== 0 && r.exitCode !== 2) throw new Error(`cryptsetup open --test-passphrase ${path}: exit ${r.exitCode}: ${r.stderr}`);
    return r.exitCode === 0;
  } finally {
    await tmp.cleanup();
  }
}

/** cryptsetupUUID is `cryptsetup luksUUID path` as printed. */
export async function cryptsetupUUID(path: string): Promise<string> {
  return (await execa("cryptsetup", ["luksUUID", path], { stdin: "ignore" })).stdout.trim();
}

/** keyForms are the ways a key might leak into text: raw, hex, base64. */
export function keyForms(key: Uint8Array): string[] {
  const b = Buffer.from(key);
  return [b.toString("hex"), b.toString("base64").replace(/=+$/, ""), b.toString("latin1")].filter((s) => s.length >= 4);
}

/**
 * writeWrapper writes an executable shell script `name` into `dir` that logs one JSON-ish line per
 * run to `log` (start/end time, pid, argv, what fd 0 is) and then runs `inner` (default real
 * cryptsetup) with the same arguments. Returns the script's path.
 */
export async function writeWrapper(dir: string, log: string, inner = 'cryptsetup "$@"', name = "cryptsetup-wrapper"): Promise<string> {
  const path = join(dir, name);
  const script = `#!/bin/sh
echo "start $$ $(date +%s%N) fd0=$(readlink /proc/$$/fd/0) argv=$*" >> '${log}'
${inner}
rc=$?
echo "end $$ $(date +%s%N) rc=$rc" >> '${log}'
exit $rc
`;
  await writeFile(path, script, { mode: 0o700 });
  return path;
}

/** trackTempDirs registers an afterEach that removes every temp dir passed to the returned track(). */
export function trackTempDirs(): <T extends TempDir>(p: Promise<T>) => Promise<T> {
  const cleanups: TempDir[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!.cleanup();
  });
  return async (p) => {
    const t = await p;
    cleanups.push(t);
    return t;
  };
}

/** caughtDiskError awaits a promise that must reject with a DiskError and returns the error. */
export async function caughtDiskError(p: Promise<unknown>): Promise<DiskError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DiskError);
  return err as DiskError;
}
