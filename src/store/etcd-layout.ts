/**
 * How the etcd store lays out core's keys in etcd. Everything lives under one namespace (so one etcd
 * RBAC prefix grant covers it, and several meshes can share an etcd cluster):
 *
 *   <namespace>kv/<key>        the value of core key <key>
 *   <namespace>deleted/<key>   a tombstone: written (empty) by every delete of <key>; its
 *                              mod_revision is the revision of the last delete
 *
 * etcd forgets deleted keys, so without tombstones a transaction could not tell that a key under a
 * prefix it listed was deleted meanwhile (see the prefix guard in store-etcd.ts). Tombstones are
 * never removed: like the memory store's deletion map they are bounded by the set of keys ever
 * deleted (for the IP pools: by the pool sizes).
 */

/** defaultNamespace is the namespace used when EtcdStoreOptions.namespace is undefined. */
export const defaultNamespace = "attested-mesh/";

/** EtcdRange is a half-open etcd key range [key, range_end). */
export interface EtcdRange {
  key: Buffer;
  range_end: Buffer;
}

/** EtcdLayout maps core keys and prefixes to etcd keys and ranges. Immutable; safe to share. */
export class EtcdLayout {
  /** namespace is the prefix of every etcd key this store touches. */
  readonly namespace: string;
  readonly #values: Buffer;
  readonly #tombstones: Buffer;

  constructor(namespace: string = defaultNamespace) {
    this.namespace = namespace;
    this.#values = Buffer.from(`${namespace}kv/`);
    this.#tombstones = Buffer.from(`${namespace}deleted/`);
  }

  /** valueKey is the etcd key holding core key `key`. */
  valueKey(key: string): Buffer {
    return Buffer.concat([this.#values, Buffer.from(key)]);
  }

  /** tombstoneKey is the etcd key recording deletes of core key `key`. */
  tombstoneKey(key: string): Buffer {
    return Buffer.concat([this.#tombstones, Buffer.from(key)]);
  }

  /** valueRange is the etcd range of every core key starting with `prefix` ("" = all). */
  valueRange(prefix: string): EtcdRange {
    return rangeOf(this.valueKey(prefix));
  }

  /** tombstoneRange is the etcd range of the tombstones of every core key starting with `prefix`. */
  tombstoneRange(prefix: string): EtcdRange {
    return rangeOf(this.tombstoneKey(prefix));
  }

  /** keyOf turns an etcd key from valueRange back into the core key. */
  keyOf(etcdKey: Buffer): string {
    return etcdKey.subarray(this.#values.length).toString();
  }
}

/** rangeOf is the range of every key starting with the non-empty `prefix`. */
function rangeOf(prefix: Buffer): EtcdRange {
  return { key: prefix, range_end: prefixEnd(prefix) };
}

/**
 * prefixEnd is the smallest key greater than every key starting with `prefix` (etcd's
 * clientv3.GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented and the rest cut.
 * The layout's prefixes always contain such a byte ('/'), so the all-keys form ("\0") never arises.
 */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i] += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** compareKeys orders core keys like the memory store does (JavaScript string order). */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
