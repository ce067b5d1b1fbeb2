import { ConflictError, InternalError } from "./errors.js";

/**
 * Store is the Coordinators' shared key/value state (peers, IPs, cluster secrets). Keys are
 * '/'-separated strings; values are bytes. Implementations: store-memory.ts (one Coordinator,
 * persisted to a file) and src/store/store-etcd.ts (several Coordinators).
 */
export interface Store {
  /** get returns the value of key, or undefined. */
  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined>;
  /** list returns every key/value under prefix, sorted by key. */
  list(prefix: string): Promise<Array<[string, Uint8Array]>>;
  /**
   * begin starts an optimistic transaction: reads see the store plus the transaction's own writes;
   * commit fails with ConflictError when a key it read (or a prefix it listed) changed meanwhile.
   */
  begin(): Promise<Transaction>;
  /** close releases the store; later calls fail. */
  close(): Promise<void>;
}

/**
 * ReadOptions qualify a read. local: answer from this replica's copy even when the cluster has no
 * quorum (an etcd serializable read): it may lag behind the cluster by as long as the partition
 * lasted. Stores with one copy ignore it.
 */
export interface ReadOptions {
  local?: boolean;
}

/** Transaction is one unit of reads and buffered writes. Not safe for concurrent use. */
export interface Transaction {
  get(key: string): Promise<Uint8Array | undefined>;
  list(prefix: string): Promise<Array<[string, Uint8Array]>>;
  put(key: string, value: Uint8Array): void;
  delete(key: string): void;
  /** commit applies every write atomically (and durably), or throws and applies none. */
  commit(): Promise<void>;
  /** rollback drops the writes; the transaction cannot be used afterwards. */
  rollback(): void;
}

/**
 * BufferedTransaction is the part every store's transaction shares: writes are buffered (a value, or
 * null for a delete) until commit, and a committed or rolled-back transaction refuses further use.
 * Stores implement the reads and commit.
 */
export abstract class BufferedTransaction implements Transaction {
  /** writes are the buffered writes by key: a value, or null for a delete. */
  protected readonly writes = new Map<string, Uint8Array | null>();
  #done = false;

  abstract list(prefix: string): Promise<Array<[string, Uint8Array]>>;
  /** readKey reads `key` from the store's snapshot (it was not written in this transaction) and records the read for the commit's conflict check. */
  protected abstract readKey(key: string): Promise<Uint8Array | undefined>;
  abstract commit(): Promise<void>;

  /** get reads this transaction's own write of `key`, else the store's snapshot. */
  async get(key: string): Promise<Uint8Array | undefined> {
    this.check();
    if (this.writes.has(key)) return this.writes.get(key) ?? undefined;
    return this.readKey(key);
  }

  put(key: string, value: Uint8Array): void {
    this.check();
    this.writes.set(key, value);
  }

  delete(key: string): void {
    this.check();
    this.writes.set(key, null);
  }

  rollback(): void {
    this.#done = true;
    this.writes.clear();
  }

  /** check throws once the transaction was committed or rolled back. */
  protected check(): void {
    if (this.#done) throw new InternalError("store: transaction already committed or rolled back");
  }

  /** finish is commit's first step: the transaction cannot be used again, whatever the commit's outcome. */
  protected finish(): void {
    this.check();
    this.#done = true;
  }
}

/** transactionAttempts bounds how often runTransaction retries on conflicts. */
const transactionAttempts = 64;

/**
 * runTransaction runs `fn` in a transaction and commits it, retrying the whole function when the
 * commit loses a race (ConflictError). `fn` must have no side effects outside the transaction.
 */
export async function runTransaction<T>(store: Store, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < transactionAttempts; attempt++) {
    const tx = await store.begin();
    let result: T;
    try {
      result = await fn(tx);
    } catch (err) {
      tx.rollback();
      throw err;
    }
    try {
      await tx.commit();
      return result;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      lastErr = err;
      // Jittered backoff spreads out contenders so they stop colliding round after round.
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 ** attempt, 50)));
    }
  }
  throw new ConflictError(`store transaction: gave up after ${transactionAttempts} conflicting attempts`, { cause: lastErr });
}

/**
 * overlayWrites returns what a transaction's list(prefix) sees: the stored entries under prefix with
 * the transaction's own buffered writes (null = deleted) applied, sorted by key. Shared by stores.
 */
export function overlayWrites(
  stored: Iterable<[string, Uint8Array]>,
  writes: ReadonlyMap<string, Uint8Array | null>,
  prefix: string,
): Array<[string, Uint8Array]> {
  const merged = new Map<string, Uint8Array>(stored);
  for (const [k, v] of writes) {
    if (!k.startsWith(prefix)) continue;
    if (v === null) merged.delete(k);
    else merged.set(k, v);
  }
  return [...merged].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
