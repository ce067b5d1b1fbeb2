/**
 * Prometheus metrics of one meshd (`--metrics-listen`), with prom-client on a registry of its own.
 * The core reports through MeshEvents; the transports and wrappers here count the rest. Nothing
 * secret is ever a label or a value: labels are roles, states, platforms, check names and results.
 */
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Validator, Verdict } from "../attestation/attestation.js";
import { errorMessage } from "../core/errors.js";
import type { MeshEvents } from "../core/events.js";
import type { Logger } from "../shared/logger.js";
import type { ReadOptions, Store, Transaction } from "../core/store.js";

/** MeshView is what the scrape-time gauges read from the running peer. */
export interface MeshView {
  /** state is the peer's state machine state. */
  state(): string;
  /** resourceVersion is the served (Coordinator) or applied (Node) peer-set version; undefined before either. */
  resourceVersion(): number | undefined;
  /** peersByRole counts the peer set by role (Coordinators only; undefined elsewhere). */
  peersByRole(): Promise<Record<string, number> | undefined>;
  /** openStreams is the number of open WatchUpdates streams (Coordinators; 0 elsewhere). */
  openStreams(): number;
}

const secondsBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** MeshMetrics holds every metric of one meshd. */
export class MeshMetrics {
  readonly registry = new Registry();
  readonly #handshakes: Counter<"result" | "check">;
  readonly #verdicts: Counter<"platform" | "result" | "check">;
  readonly #polls: Counter;
  readonly #propagation: Histogram;
  readonly #diskKeys: Counter<"result">;
  readonly #dataKeys: Counter<"result">;
  readonly #activations: Histogram<"role" | "result">;
  readonly #store: Histogram<"op">;
  readonly #storeErrors: Counter<"op">;

  constructor(view: MeshView) {
    const registers = [this.registry];
    new Gauge({
      name: "meshd_peer_state",
      help: "1 for this peer's current state (AcceptingInit, ActivatingNodes, IsNode, …)",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        this.set({ state: view.state() }, 1);
      },
    });
    new Gauge({
      name: "meshd_resource_version",
      help: "peer-set version this peer serves (Coordinator) or applied last (Node)",
      registers,
      collect() {
        const v = view.resourceVersion();
        if (v !== undefined) this.set(v);
      },
    });
    new Gauge({
      name: "meshd_peers",
      help: "peers in the peer set by role (Coordinators only)",
      labelNames: ["role"],
      registers,
      async collect() {
        const byRole = await view.peersByRole().catch(() => undefined);
        this.reset();
        if (byRole) for (const [role, n] of Object.entries(byRole)) this.set({ role }, n);
      },
    });
    new Gauge({ name: "meshd_open_streams", help: "open WatchUpdates streams (Coordinators)", registers, collect() { this.set(view.openStreams()); } });
    this.#polls = new Counter({ name: "meshd_polls_total", help: "vpnapi GetUpdate polls served (rate() gives polls per second)", registers });
    this.#propagation = new Histogram({
      name: "meshd_propagation_seconds",
      help: "time from a peer-set commit until a Node acknowledged it (one observation per Node and version)",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers,
    });
    this.#handshakes = new Counter({ name: "meshd_atls_handshakes_total", help: "aTLS handshakes this peer served or refused, by the check that refused it", labelNames: ["result", "check"], registers });
    this.#verdicts = new Counter({ name: "meshd_attestation_verdicts_total", help: "attestation documents this peer verified, by platform, result and the first failed check", labelNames: ["platform", "result", "check"], registers });
    this.#diskKeys = new Counter({ name: "meshd_disk_key_requests_total", help: "state-disk key requests served by this Coordinator, by result", labelNames: ["result"], registers });
    this.#dataKeys = new Counter({ name: "meshd_data_key_requests_total", help: "GetDataKey requests served by this Coordinator, by result", labelNames: ["result"], registers });
    this.#activations = new Histogram({ name: "meshd_activation_seconds", help: "activations of one peer by this Coordinator, by role and result", labelNames: ["role", "result"], buckets: secondsBuckets, registers });
    this.#store = new Histogram({ name: "meshd_store_seconds", help: "store round trips (etcd or the embedded store) by operation", labelNames: ["op"], buckets: [0.0005, 0.001, 0.0025, ...secondsBuckets], registers });
    this.#storeErrors = new Counter({ name: "meshd_store_errors_total", help: "store operations that failed (conflicts excluded), by operation", labelNames: ["op"], registers });
  }

  /** events is the core's MeshEvents sink. */
  get events(): MeshEvents {
    return {
      propagation: (ms) => this.#propagation.observe(ms / 1000),
      diskKey: (result) => this.#diskKeys.inc({ result }),
      dataKey: (result) => this.#dataKeys.inc({ result }),
      activation: (role, result, ms) => this.#activations.observe({ role, result }, ms / 1000),
    };
  }

  /** poll counts one served GetUpdate. */
  poll(): void {
    this.#polls.inc();
  }

  /** handshake counts one aTLS handshake this server answered ("served") or refused (naming the check). */
  handshake(result: "served" | "refused", check = ""): void {
    this.#handshakes.inc({ result, check });
  }

  /** verdict counts one verified attestation document. */
  verdict(v: Verdict): void {
    const failed = v.checks.find((c) => c.status === "failed")?.name ?? "";
    this.#verdicts.inc({ platform: v.platform, result: v.ok ? "ok" : "failed", check: failed });
  }

  /** validators wraps validators so every verdict they give is counted. */
  validators(validators: readonly Validator[]): Validator[] {
    return validators.map((v) => ({
      platform: v.platform,
      oid: v.oid,
      validate: async (document, binding) => {
        const verdict = await v.validate(document, binding);
        this.verdict(verdict);
        return verdict;
      },
    }));
  }

  /** store wraps a store so its round trips and failures are measured (same behaviour otherwise). */
  store(inner: Store): Store {
    const timed = <T>(op: string, fn: () => Promise<T>): Promise<T> => {
      const end = this.#store.startTimer({ op });
      return fn().then(
        (v) => (end(), v),
        (err: unknown) => {
          end();
          if ((err as { code?: unknown }).code !== "aborted") this.#storeErrors.inc({ op });
          throw err;
        },
      );
    };
    return {
      get: (key: string, options?: ReadOptions) => timed("get", () => inner.get(key, options)),
      list: (prefix: string) => timed("list", () => inner.list(prefix)),
      begin: async (): Promise<Transaction> => {
        const tx = await inner.begin();
        return {
          get: (key) => timed("get", () => tx.get(key)),
          list: (prefix) => timed("list", () => tx.list(prefix)),
          put: (key, value) => tx.put(key, value),
          delete: (key) => tx.delete(key),
          commit: () => timed("commit", () => tx.commit()),
          rollback: () => tx.rollback(),
        };
      },
      close: () => inner.close(),
    };
  }
}

/**
 * serveMetrics serves `GET /metrics` (Prometheus text) at host:port until the returned function is
 * called. Any other path is 404; a failing collection is a 500 with the reason.
 */
export async function serveMetrics(metrics: MeshMetrics, host: string, port: number, logger: Logger): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: meshd serves only GET /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (err: unknown) => {
        logger.warn("metrics collection failed", { error: errorMessage(err) });
        res.writeHead(500, { "content-type": "text/plain" }).end(`metrics collection failed: ${errorMessage(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
