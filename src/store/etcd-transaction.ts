import { CompareResult, CompareTarget, type ICompare, type IKeyValue, type IRangeRequest, type IRangeResponse, type IRequestOp, type ITxnRequest, type ITxnResponse } from "etcd3";
import { ConflictError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import { BufferedTransaction, overlayWrites } from "../core/store.js";
import type { EtcdLayout } from "./etcd-layout.js";

/**
 * EtcdKV is what a transaction needs from its EtcdStore: the key layout and etcd calls whose
 * failures are already mapped to core errors (src/store/errors.ts).
 */
export interface EtcdKV {
  readonly layout: EtcdLayout;
  readonly logger: Logger;
  range(op: string, req: IRangeRequest): Promise<IRangeResponse>;
  txn(op: string, req: ITxnRequest): Promise<ITxnResponse>;
}

/** conflictNames bounds how many read keys and prefixes a ConflictError message lists. */
const conflictNames = 5;

/**
 * EtcdTransaction is the etcd store's optimistic transaction. Not safe for concurrent use.
 *
 * Reads form one snapshot: the first read runs at etcd's current revision R, every later read asks
 * for revision R, so a transaction never mixes two versions of the store (a read-only snapshot of
 * the resource version and the peers is consistent even when it is rolled back, not committed).
 * Should etcd compact R away meanwhile, later reads see the current revision instead (the memory
 * store's behaviour); the guards below stay sound, because none of them needs the reads to share
 * one revision: a key's guard holds its own mod revision, and a prefix read at R' ≥ R is guarded by
 * "nothing under it changed after R", which is stricter than after R'.
 *
 * commit() is ONE etcd Txn: If(guards) Then(writes). The guards make it fail exactly when something
 * the transaction read was written or deleted after R:
 *  - get(key) → `mod_revision(key) == m`, m being what the read saw (0 when the key was absent: an
 *    absent key compares as 0, so a later create fails it; a delete turns m into 0, a re-create into
 *    a new revision).
 *  - list(prefix) → two range compares, each one Compare with range_end, whatever the number of keys:
 *    `mod_revision < R+1` over the prefix's values (fails when any key under it was created or
 *    changed after R; an empty range passes), and `mod_revision < R+1` over the prefix's tombstones
 *    (fails when any key under it was deleted after R: every delete writes its tombstone in the same
 *    Txn, see etcd-layout.ts). Together: exactly "a write or delete under the prefix after R", the
 *    memory store's prefix revision, and like it exact for any string prefix, '/'-terminated or not.
 * Writes are buffered; a delete also puts the key's tombstone. No reads and no writes: nothing to do.
 */
export class EtcdTransaction extends BufferedTransaction {
  readonly #kv: EtcdKV;
  /** #revision is R, the snapshot revision, fixed by the first read. */
  #revision: string | undefined;
  /** #pinned is false once etcd compacted R away: later reads see the current revision. */
  #pinned = true;
  readonly #readKeys = new Map<string, string>();
  readonly #readPrefixes = new Set<string>();

  constructor(kv: EtcdKV) {
    super();
    this.#kv = kv;
  }

  protected async readKey(key: string): Promise<Uint8Array | undefined> {
    const res = await this.#read(`store get ${key}`, { key: this.#kv.layout.valueKey(key) });
    const kv: IKeyValue | undefined = res.kvs[0];
    if (!this.#readKeys.has(key)) this.#readKeys.set(key, kv?.mod_revision ?? "0");
    return kv?.value;
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    this.check();
    const res = await this.#read(`store list ${prefix}`, this.#kv.layout.valueRange(prefix));
    this.#readPrefixes.add(prefix);
    return overlayWrites(
      res.kvs.map((kv): [string, Uint8Array] => [this.#kv.layout.keyOf(kv.key), kv.value]),
      this.writes,
      prefix,
    );
  }

  async commit(): Promise<void> {
    this.finish();
    if (this.#revision === undefined && this.writes.size === 0) return;
    const res = await this.#kv.txn("store commit", { compare: this.#guards(), success: this.#ops(), failure: [] });
    if (!res.succeeded) {
      const keys = [...this.#readKeys.keys()].slice(0, conflictNames).join(", ");
      const prefixes = [...this.#readPrefixes].slice(0, conflictNames).join(", ");
      this.#kv.logger.debug("store commit conflicted", { revision: this.#revision, keys, prefixes });
      throw new ConflictError(`store commit: something the transaction read changed after revision ${this.#revision} (keys: ${keys || "none"}; prefixes: ${prefixes || "none"})`);
    }
  }

  /** #read runs a range at the snapshot revision, fixing it on the first read. */
  async #read(op: string, req: IRangeRequest): Promise<IRangeResponse> {
    if (this.#revision !== undefined && this.#pinned) {
      try {
        return await this.#kv.range(op, { ...req, revision: this.#revision });
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        this.#pinned = false;
        this.#kv.logger.debug("store snapshot revision compacted; reading the current revision", { revision: this.#revision });
      }
    }
    const res = await this.#kv.range(op, req);
    this.#revision ??= res.header.revision;
    return res;
  }

  #guards(): ICompare[] {
    const layout = this.#kv.layout;
    const compares: ICompare[] = [];
    for (const [key, modRevision] of this.#readKeys) {
      compares.push({ key: layout.valueKey(key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: modRevision });
    }
    if (this.#readPrefixes.size === 0) return compares;
    const after = (BigInt(this.#revision!) + 1n).toString();
    for (const prefix of this.#readPrefixes) {
      for (const range of [layout.valueRange(prefix), layout.tombstoneRange(prefix)]) {
        compares.push({ ...range, target: CompareTarget.Mod, result: CompareResult.Less, mod_revision: after });
      }
    }
    return compares;
  }

  #ops(): IRequestOp[] {
    const layout = this.#kv.layout;
    const ops: IRequestOp[] = [];
    for (const [key, value] of this.writes) {
      if (value !== null) {
        ops.push({ request_put: { key: layout.valueKey(key), value: Buffer.from(value) } });
      } else {
        ops.push({ request_delete_range: { key: layout.valueKey(key) } });
        ops.push({ request_put: { key: layout.tombstoneKey(key), value: Buffer.alloc(0) } });
      }
    }
    return ops;
  }
}
