import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ConflictError, FailedPreconditionError, InternalError } from "./errors.js";
import { overlayWrites, type Store, type Transaction } from "./store.js";

/** MemoryStoreOptions configures a MemoryStore. */
export interface MemoryStoreOptions {
  /** file is where the store persists (mode 0600); undefined keeps it in memory only (tests). */
  file?: string;
  /**
   * refuseWritesReason, when set, makes every commit that writes fail with FailedPreconditionError
   * carrying this reason, before anything is written. meshd sets it when `file` lies on a state dir
   * the host can read: only a Coordinator writes its store, and its first write comes before the
   * master secret, so the secret is never written in plaintext. undefined: writes are allowed.
   */
  refuseWritesReason?: string;
}

interface Entry {
  value: Uint8Array;
  revision: number;
}

/**
 * MemoryStore is the single-Coordinator Store: a map in memory, written as a whole to `file`
 * (atomically: temp file, fsync, rename) before every commit returns. Optimistic transactions track
 * the revision of each key they read and of each prefix they listed. Safe for concurrent use.
 */
export class MemoryStore implements Store {
  readonly #file: string | undefined;
  readonly #refuseWritesReason: string | undefined;
  readonly #data = new Map<string, Entry>();
  /** #deleted remembers the revision at which a key was deleted, so a read of a missing key conflicts too. */
  readonly #deleted = new Map<string, number>();
  #revision = 0;
  #closed = false;
  #persisting: Promise<void> = Promise.resolve();

  private constructor(file: string | undefined, refuseWritesReason: string | undefined) {
    this.#file = file;
    this.#refuseWritesReason = refuseWritesReason;
  }

  /** open loads the store from options.file when it exists, else starts empty. */
  static async open(options: MemoryStoreOptions = {}): Promise<MemoryStore> {
    const store = new MemoryStore(options.file, options.refuseWritesReason);
    if (options.file !== undefined) await store.#load(options.file);
    return store;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    this.#check();
    return this.#data.get(key)?.value;
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    this.#check();
    return this.#list(prefix).map(([k, e]) => [k, e.value]);
  }

  async begin(): Promise<Transaction> {
    this.#check();
    return new MemoryTransaction(this);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#persisting;
  }

  /** revisionOf is the revision a key was last written or deleted at (0: never). */
  revisionOf(key: string): number {
    return this.#data.get(key)?.revision ?? this.#deleted.get(key) ?? 0;
  }

  /** prefixRevision is the highest revision of any key under prefix, deleted ones included. */
  prefixRevision(prefix: string): number {
    let max = 0;
    for (const [k, e] of this.#data) if (k.startsWith(prefix) && e.revision > max) max = e.revision;
    for (const [k, r] of this.#deleted) if (k.startsWith(prefix) && r > max) max = r;
    return max;
  }

  /** valueOf reads one key without transaction bookkeeping. */
  valueOf(key: string): Uint8Array | undefined {
    return this.#data.get(key)?.value;
  }

  /** entries lists the raw entries under prefix, sorted by key. */
  entries(prefix: string): Array<[string, Entry]> {
    return this.#list(prefix);
  }

  /** revision is the store's revision: it grows by one with every commit that writes. */
  get revision(): number {
    return this.#revision;
  }

  /**
   * apply commits writes if no read key changed since `readRevisions`; synchronous up to the
   * persistence step, so two commits can never interleave their checks.
   */
  async apply(readKeys: Map<string, number>, readPrefixes: Map<string, number>, writes: Map<string, Uint8Array | null>): Promise<void> {
    this.#check();
    for (const [key, rev] of readKeys) {
      if (this.revisionOf(key) !== rev) throw new ConflictError(`store: key ${key} changed during the transaction`);
    }
    for (const [prefix, rev] of readPrefixes) {
      if (this.prefixRevision(prefix) !== rev) throw new ConflictError(`store: keys under ${prefix} changed during the transaction`);
    }
    if (writes.size === 0) return;
    if (this.#refuseWritesReason !== undefined) throw new FailedPreconditionError(`store: refusing to write: ${this.#refuseWritesReason}`);
    const rev = ++this.#revision;
    for (const [key, value] of writes) {
      if (value === null) {
        this.#data.delete(key);
        this.#deleted.set(key, rev);
      } else {
        this.#data.set(key, { value, revision: rev });
        this.#deleted.delete(key);
      }
    }
    await this.#persist();
  }

  #list(prefix: string): Array<[string, Entry]> {
    const out: Array<[string, Entry]> = [];
    for (const [k, e] of this.#data) if (k.startsWith(prefix)) out.push([k, e]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  #check(): void {
    if (this.#closed) throw new InternalError("store: closed");
  }

  /** #persist writes a snapshot; snapshots are taken in commit order and written one at a time. */
  #persist(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return Promise.resolve();
    const snapshot = JSON.stringify({
      version: 1,
      revision: this.#revision,
      entries: Object.fromEntries([...this.#data].map(([k, e]) => [k, Buffer.from(e.value).toString("base64")])),
    });
    const next = this.#persisting.then(() => writeFileAtomic(file, snapshot));
    this.#persisting = next.catch(() => {});
    return next.catch((err: unknown) => {
      throw new InternalError(`store: persist to ${file}`, { cause: err });
    });
  }

  async #load(file: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new InternalError(`store: read ${file}`, { cause: err });
    }
    let parsed: { revision?: unknown; entries?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch (err) {
      throw new InternalError(`store: ${file} is corrupt (not JSON)`, { cause: err });
    }
    if (typeof parsed.entries !== "object" || parsed.entries === null || typeof parsed.revision !== "number") {
      throw new InternalError(`store: ${file} is corrupt (missing entries or revision)`);
    }
    this.#revision = parsed.revision;
    for (const [k, v] of Object.entries(parsed.entries as Record<string, unknown>)) {
      if (typeof v !== "string") throw new InternalError(`store: ${file} is corrupt (entry ${k})`);
      this.#data.set(k, { value: Buffer.from(v, "base64"), revision: this.#revision });
    }
  }
}

class MemoryTransaction implements Transaction {
  readonly #store: MemoryStore;
  readonly #readKeys = new Map<string, number>();
  readonly #readPrefixes = new Map<string, number>();
  readonly #writes = new Map<string, Uint8Array | null>();
  #done = false;

  constructor(store: MemoryStore) {
    this.#store = store;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    this.#check();
    if (this.#writes.has(key)) return this.#writes.get(key) ?? undefined;
    if (!this.#readKeys.has(key)) this.#readKeys.set(key, this.#store.revisionOf(key));
    return this.#store.valueOf(key);
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    this.#check();
    if (!this.#readPrefixes.has(prefix)) this.#readPrefixes.set(prefix, this.#store.prefixRevision(prefix));
    return overlayWrites(
      this.#store.entries(prefix).map(([k, e]) => [k, e.value]),
      this.#writes,
      prefix,
    );
  }

  put(key: string, value: Uint8Array): void {
    this.#check();
    this.#writes.set(key, value);
  }

  delete(key: string): void {
    this.#check();
    this.#writes.set(key, null);
  }

  async commit(): Promise<void> {
    this.#check();
    this.#done = true;
    await this.#store.apply(this.#readKeys, this.#readPrefixes, this.#writes);
  }

  rollback(): void {
    this.#done = true;
    this.#writes.clear();
  }

  #check(): void {
    if (this.#done) throw new InternalError("store: transaction already committed or rolled back");
  }
}

/** writeFileAtomic writes data to a temp file (mode 0600), fsyncs it and renames it over path. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
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
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
