import { link, mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { crashPoint } from "./crash.js";

/**
 * writeFileAtomic writes data to a temp file (mode 0600), fsyncs it, renames it over path and
 * fsyncs the directory: after a crash or power loss the file is either the old or the new content,
 * never a mix. With keepPrevious the old content stays as `<path>.prev`.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { keepPrevious?: boolean } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(path), `.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    if (options.keepPrevious) await keepPrevious(path);
    crashPoint("atomic-write:before-rename");
    await rename(tmp, path);
    crashPoint("atomic-write:after-rename");
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // The rename is durable only once the directory is: fsync it too.
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** keepPrevious makes `<path>.prev` the current `path` (a hard link, atomically replacing an older copy); no file, nothing to keep. */
async function keepPrevious(path: string): Promise<void> {
  const tmp = `${path}.prev.${process.pid}.tmp`;
  await unlink(tmp).catch(() => {}); // left by a crash of an earlier process with this pid
  try {
    await link(path, tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  await rename(tmp, `${path}.prev`);
}

