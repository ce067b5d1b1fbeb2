/**
 * A minimal writer of the cpio "newc" format the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Pure: no file system access, so the
 * initramfs is byte-for-byte reproducible from its inputs (mtimes are 0).
 */

/** CpioEntry is one archive member; parents must come before their children. */
export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; data: Uint8Array; mode?: number }
  | { kind: "char"; path: string; major: number; minor: number; mode?: number };

const typeBits = { dir: 0o040000, file: 0o100000, char: 0o020000 } as const;
const defaultMode = { dir: 0o755, file: 0o644, char: 0o600 } as const;

const hex8 = (n: number): string => n.toString(16).padStart(8, "0");
const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);

function member(ino: number, name: string, mode: number, data: Uint8Array, rdev: [number, number]): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const header = Buffer.from(
    "070701" +
      [ino, mode, 0, 0, mode & 0o040000 ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0].map(hex8).join(""),
    "ascii",
  );
  return [header, nameBytes, pad4(header.length + nameBytes.length), Buffer.from(data), pad4(data.length)];
}

/** cpioNewc returns the archive of `entries` (paths relative to the archive root, without a leading "/"). */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, "");
    if (!path) throw new Error("cpio: empty path");
    const mode = typeBits[e.kind] | (e.mode ?? defaultMode[e.kind]);
    const data = e.kind === "file" ? e.data : new Uint8Array();
    const rdev: [number, number] = e.kind === "char" ? [e.major, e.minor] : [0, 0];
    parts.push(...member(ino++, path, mode, data, rdev));
  }
  parts.push(...member(0, "TRAILER!!!", 0, new Uint8Array(), [0, 0]));
  return Buffer.concat(parts);
}
