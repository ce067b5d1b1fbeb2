import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../shared/atomic-file.js";
import { ConflictError, errorMessage, FailedPreconditionError, InternalError } from "../core/errors.js";
import { BufferedTransaction, overlayWrites, type Store, type Transaction } from "../core/store.js";

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
  /** write replaces `file` with `data` durably; a seam for tests that inject a full disk. Default writeFileAtomic keeping a previous copy. */
  write?: (file: string, data: string) => Promise<void>;
}

interface Entry {
  value: Uint8Array;
  revision: number;
}

/**
 * MemoryStore is the single-Coordinator Store: a map in memory, written as a whole to `file`
 * (atomically: temp file, fsync, rename, directory fsync) before every commit returns, with a
 * SHA-256 of its content, and the copy it replaces kept as `<file>.prev`. A file that fails its
 * checksum (a torn write, a bad disk) is refused at open, naming that last good copy. A commit whose
 * write fails (ENOSPC) is undone in memory and fails with the cause. Optimistic transactions track
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
  readonly #write: (file: string, data: string) => Promise<void>;
  /** #broken says why the store refuses everything: a failed write it could not undo in memory. */
  #broken: string | undefined;

  private constructor(file: string | undefined, refuseWritesReason: string | undefined, write: ((file: string, data: string) => Promise<void>) | undefined) {
    this.#file = file;
    this.#refuseWritesReason = refuseWritesReason;
    this.#write = write ?? ((f, d) => writeFileAtomic(f, d, { keepPrevious: true }));
  }

  /** open loads the store from options.file when it exists, else starts empty. */
  static async open(options: MemoryStoreOptions = {}): Promise<MemoryStore> {
    const store = new MemoryStore(options.file, options.refuseWritesReason, options.write);
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

  /**
   * discardAll deletes every key in one commit and returns how many there were: a fresh peer's
   * store holds only what an activation interrupted before its commit point wrote.
   */
  async discardAll(): Promise<number> {
    const keys = [...this.#data.keys()];
    if (keys.length > 0) await this.apply(new Map(), new Map(), new Map(keys.map((k) => [k, null])));
    return keys.length;
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
    const before = new Map([...writes.keys()].map((k) => [k, { entry: this.#data.get(k), deleted: this.#deleted.get(k) }]));
    for (const [key, value] of writes) {
      if (value === null) {
        this.#data.delete(key);
        this.#deleted.set(key, rev);
      } else {
        this.#data.set(key, { value, revision: rev });
        this.#deleted.delete(key);
      }
    }
    try {
      await this.#persist();
    } catch (err) {
      // Not durable: undo it, so nobody reads what the file does not hold. A later commit already
      // built on it cannot be untangled: then the store refuses everything until meshd restarts.
      if (this.#revision === rev) {
        for (const [key, b] of before) {
          if (b.entry) this.#data.set(key, b.entry);
          else this.#data.delete(key);
          if (b.deleted !== undefined) this.#deleted.set(key, b.deleted);
          else this.#deleted.delete(key);
        }
        this.#revision = rev - 1;
      } else this.#broken = `an earlier write failed (${errorMessage(err)}); restart meshd to continue from ${this.#file}`;
      throw err;
    }
  }

  #list(prefix: string): Array<[string, Entry]> {
    const out: Array<[string, Entry]> = [];
    for (const [k, e] of this.#data) if (k.startsWith(prefix)) out.push([k, e]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  #check(): void {
    if (this.#closed) throw new InternalError("store: closed");
    if (this.#broken) throw new InternalError(`store: ${this.#broken}`);
  }

  /** #persist writes a snapshot; snapshots are taken in commit order and written one at a time. */
  #persist(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return Promise.resolve();
    const body = { version: 1, revision: this.#revision, entries: Object.fromEntries([...this.#data].map(([k, e]) => [k, Buffer.from(e.value).toString("base64")])) };
    const snapshot = JSON.stringify({ ...body, sha256: checksum(body) });
    const next = this.#persisting.then(() => this.#write(file, snapshot));
    this.#persisting = next.catch(() => {});
    return next.catch((err: unknown) => {
      throw new InternalError(`store: persist to ${file}: ${errorMessage(err)} (the commit was not made)`, { cause: err });
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
    const corrupt = (why: string, cause?: unknown): InternalError =>
      new InternalError(
        `store: ${file} is corrupt (${why}); it is left as it is. The copy it replaced is ${file}.prev: check it and move it into place to start from it`,
        cause === undefined ? undefined : { cause },
      );
    let parsed: { version?: unknown; revision?: unknown; entries?: unknown; sha256?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch (err) {
      throw corrupt("not JSON: a torn or damaged write", err);
    }
    if (typeof parsed.entries !== "object" || parsed.entries === null || typeof parsed.revision !== "number") {
      throw corrupt("missing entries or revision");
    }
    // Files from before checksums have none; every file written now has one and it must match.
    if (parsed.sha256 !== undefined && parsed.sha256 !== checksum({ version: parsed.version, revision: parsed.revision, entries: parsed.entries })) {
      throw corrupt("checksum mismatch: its content changed after it was written");
    }
    this.#revision = parsed.revision;
    for (const [k, v] of Object.entries(parsed.entries as Record<string, unknown>)) {
      if (typeof v !== "string") throw new InternalError(`store: ${file} is corrupt (entry ${k})`);
      this.#data.set(k, { value: Buffer.from(v, "base64"), revision: this.#revision });
    }
  }
}

class MemoryTransaction extends BufferedTransaction {
  readonly #store: MemoryStore;
  readonly #readKeys = new Map<string, number>();
  readonly #readPrefixes = new Map<string, number>();

  constructor(store: MemoryStore) {
    super();
    this.#store = store;
  }

  protected async readKey(key: string): Promise<Uint8Array | undefined> {
    if (!this.#readKeys.has(key)) this.#readKeys.set(key, this.#store.revisionOf(key));
    return this.#store.valueOf(key);
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    this.check();
    if (!this.#readPrefixes.has(prefix)) this.#readPrefixes.set(prefix, this.#store.prefixRevision(prefix));
    return overlayWrites(
      this.#store.entries(prefix).map(([k, e]) => [k, e.value]),
      this.writes,
      prefix,
    );
  }

  async commit(): Promise<void> {
    this.finish();
    await this.#store.apply(this.#readKeys, this.#readPrefixes, this.writes);
  }
}

/** checksum is the SHA-256 (hex) of a store snapshot's JSON without its checksum. */
function checksum(body: { version: unknown; revision: unknown; entries: unknown }): string {
  return createHash("sha256").update(JSON.stringify({ version: body.version, revision: body.revision, entries: body.entries })).digest("hex");
}
