import { Etcd3, GRPCDeadlineExceededError, type IOptions, type IRangeRequest, type IRangeResponse } from "etcd3";
import { InternalError, InvalidArgumentError, UnavailableError, errorMessage } from "../core/errors.js";
import { nullLogger, type Logger } from "../shared/logger.js";
import type { ReadOptions, Store, Transaction } from "../core/store.js";
import { storeErrorOf } from "./errors.js";
import { compareKeys, defaultNamespace, EtcdLayout } from "./etcd-layout.js";
import { checkEtcdTransport, credentialsOf, type EtcdTLS } from "./etcd-tls.js";
import { EtcdTransaction, type EtcdKV } from "./etcd-transaction.js";

/** EtcdStoreOptions configures an EtcdStore. */
export interface EtcdStoreOptions {
  /**
   * endpoints are the etcd members' client addresses, "HOST:PORT" (or "http(s)://HOST:PORT"); at
   * least one. Without `tls` every endpoint must be loopback (127.0.0.0/8, ::1, localhost): the
   * store carries the master secret, which must never cross a network in plaintext.
   */
  endpoints: string[];
  /** tls speaks TLS to etcd; undefined: plaintext, allowed only to loopback endpoints. */
  tls?: EtcdTLS;
  /** namespace prefixes every etcd key of this store (see etcd-layout.ts); undefined means "attested-mesh/". */
  namespace?: string;
  /** dialTimeoutMs bounds how long open() waits for etcd to answer; undefined means 5000. */
  dialTimeoutMs?: number;
  /** callTimeoutMs is the deadline of every later etcd call; undefined means 10000. */
  callTimeoutMs?: number;
  /** logger receives the store's lines (component "store-etcd"); undefined drops them. */
  logger?: Logger;
}

const defaultDialTimeoutMs = 5_000;
const defaultCallTimeoutMs = 10_000;
/** probeIntervalMs is the pause between two connectivity probes of open(). */
const probeIntervalMs = 100;

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * passThrough (exported for managed-etcd.ts) is a fault-handling policy that calls once: etcd3's default global policy retries a
 * failed call up to three times, and replaying a commit whose first attempt may have been applied
 * would turn its success into a spurious conflict (and runTransaction would apply it twice).
 * Reads are retried by EtcdStore itself. The cast is needed because cockatiel's IPolicy declares a
 * type-only `_altReturn` member (and cockatiel is etcd3's dependency, not ours).
 */
export const passThrough = {
  execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
    fn({ signal: signal ?? new AbortController().signal }),
  onSuccess: () => ({ dispose: () => {} }),
  onFailure: () => ({ dispose: () => {} }),
} as unknown as Policy;

/**
 * EtcdStore is the Store shared by several Coordinators: core's keys and values in an etcd cluster
 * (v3 API, etcd ≥ 3.3 for range compares), under a namespace. Transactions are optimistic and
 * commit as one etcd Txn guarded by the mod revisions of everything they read (etcd-transaction.ts
 * explains the guards), so they have the memory store's semantics across processes. Safe for
 * concurrent use. close() is required: it ends the gRPC channels; later calls fail.
 */
export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #endpoints: readonly string[];
  readonly #kv: EtcdKV;
  #closed = false;

  private constructor(client: Etcd3, endpoints: readonly string[], layout: EtcdLayout, logger: Logger) {
    this.#client = client;
    this.#endpoints = endpoints;
    this.#kv = {
      layout,
      logger,
      range: (op, req) => this.#range(op, req),
      txn: (op, req) => this.#call(op, () => this.#client.kv.txn(req)),
    };
  }

  /**
   * open connects to etcd and checks, within options.dialTimeoutMs, that it answers a read in the
   * namespace; otherwise it throws UnavailableError naming the endpoints (or the mapped error when
   * etcd answered with a refusal, e.g. permission denied).
   */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const endpoints = options.endpoints.map((e) => e.trim()).filter((e) => e !== "");
    if (endpoints.length === 0) throw new InvalidArgumentError("etcd store: endpoints: at least one etcd endpoint is required");
    const dialTimeoutMs = options.dialTimeoutMs ?? defaultDialTimeoutMs;
    const callTimeoutMs = options.callTimeoutMs ?? defaultCallTimeoutMs;
    checkEtcdTransport(endpoints, options.tls);
    const credentials = credentialsOf(options.tls);
    const layout = new EtcdLayout(options.namespace ?? defaultNamespace);
    const logger = (options.logger ?? nullLogger).child("store-etcd");
    await probe(endpoints, layout, dialTimeoutMs, credentials);
    const client = new Etcd3({
      hosts: endpoints,
      ...(credentials ? { credentials } : {}),
      // With one endpoint (a managed member on loopback) there is no other member to fail over to:
      // a circuit breaker would only pause every call, also the local reads that work without a
      // quorum, for seconds after a few failures.
      faultHandling: endpoints.length === 1 ? { global: passThrough, host: () => passThrough } : { global: passThrough },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    });
    logger.info("connected to etcd", { endpoints: endpoints.join(","), namespace: layout.namespace, tls: options.tls ? (options.tls.cert ? "client certificate" : "server only") : "no (loopback)" });
    return new EtcdStore(client, endpoints, layout, logger);
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const res = await this.#range(`store get ${key}`, { key: this.#kv.layout.valueKey(key), ...(options?.local ? { serializable: true } : {}) });
    return res.kvs[0]?.value;
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    const res = await this.#range(`store list ${prefix}`, this.#kv.layout.valueRange(prefix));
    const out = res.kvs.map((kv): [string, Uint8Array] => [this.#kv.layout.keyOf(kv.key), kv.value]);
    return out.sort((a, b) => compareKeys(a[0], b[0]));
  }

  async begin(): Promise<Transaction> {
    this.#check();
    return new EtcdTransaction(this.#kv);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  /**
   * #range reads; reads are idempotent, so an unreachable member is retried once per endpoint (etcd3
   * picks another member after a failure, its circuit breaker skips members that keep failing).
   */
  async #range(op: string, req: IRangeRequest): Promise<IRangeResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#call(op, () => this.#client.kv.range(req));
      } catch (err) {
        if (!(err instanceof UnavailableError) || attempt > this.#endpoints.length) throw err;
      }
    }
  }

  /** #call runs one etcd call and maps its failure to a core error, once. */
  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#check();
    try {
      return await fn();
    } catch (err) {
      throw storeErrorOf(op, this.#endpoints, err);
    }
  }

  #check(): void {
    if (this.#closed) throw new InternalError("store: closed");
  }
}

/**
 * probe polls etcd with a count-only read of the namespace until one answers, through a separate
 * client without retries or circuit breaker (a breaker would keep a just-started etcd blocked for
 * seconds), for at most timeoutMs.
 */
async function probe(endpoints: string[], layout: EtcdLayout, timeoutMs: number, credentials: IOptions["credentials"]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const client = new Etcd3({ hosts: endpoints, ...(credentials ? { credentials } : {}), faultHandling: { global: passThrough, host: () => passThrough } });
  const op = "etcd store: connect";
  let last: unknown;
  try {
    for (;;) {
      const remaining = deadline - Date.now();
      try {
        await client.kv.range({ ...layout.valueRange(""), count_only: true }, { deadline: Date.now() + Math.max(remaining, 1) });
        return;
      } catch (raw) {
        const err = storeErrorOf(op, endpoints, raw);
        if (!(err instanceof UnavailableError)) throw err;
        // Keep the most telling failure: the last attempt often just hits the overall deadline.
        if (!(raw instanceof GRPCDeadlineExceededError) || last === undefined) last = raw;
        if (Date.now() >= deadline) {
          throw new UnavailableError(
            `etcd store: no answer from etcd at ${endpoints.join(", ")} within ${timeoutMs} ms (is etcd running and reachable from here?): ${errorMessage(last)}`,
            { cause: last },
          );
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(probeIntervalMs, deadline - Date.now()))));
    }
  } finally {
    client.close();
  }
}
