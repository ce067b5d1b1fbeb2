import { ATLSError } from "./errors.js";

/** HandshakeLimiterOptions bound the attestation work unauthenticated ClientHellos can cause. */
export interface HandshakeLimiterOptions {
  /** maxConcurrent is how many issuer calls (key generation + quote/report) run at once; undefined: 4. */
  maxConcurrent?: number;
  /** maxQueued is how many handshakes may wait for a slot; undefined: 32. Past it: busy at once. */
  maxQueued?: number;
  /**
   * maxPerSource bounds the waiting handshakes of one source address, so one flooding host cannot
   * fill the queue and starve everyone else (a burst that finds free slots is not limited by it);
   * undefined: 4.
   */
  maxPerSource?: number;
}

/** HandshakeLimiterStats are counters for logs and tests. */
export interface HandshakeLimiterStats {
  running: number;
  queued: number;
  /** peakRunning is the highest `running` ever seen. */
  peakRunning: number;
  /** refused counts handshakes failed at once as busy. */
  refused: number;
}

/**
 * HandshakeLimiter is a semaphore with a small bounded queue and a per-source cap for the aTLS
 * server's issuer calls: past its bounds run() rejects at once with ATLSError("busy") instead of
 * queueing without bound (each ClientHello with a well-formed nonce costs a key generation and a TPM
 * quote or SNP report). Safe for concurrent use; one limiter per server (or shared by servers that
 * share an issuer).
 */
export class HandshakeLimiter {
  readonly #max: number;
  readonly #maxQueued: number;
  readonly #maxPerSource: number;
  readonly #waiting: Array<() => void> = [];
  /** #waitingOf counts the waiting handshakes of each source address. */
  readonly #waitingOf = new Map<string, number>();
  #running = 0;
  #peak = 0;
  #refused = 0;

  constructor(options: HandshakeLimiterOptions = {}) {
    this.#max = positive(options.maxConcurrent ?? 4, "maxConcurrent");
    this.#maxQueued = nonNegative(options.maxQueued ?? 32, "maxQueued");
    this.#maxPerSource = positive(options.maxPerSource ?? 4, "maxPerSource");
  }

  /** stats returns the current counters. */
  get stats(): HandshakeLimiterStats {
    return { running: this.#running, queued: this.#waiting.length, peakRunning: this.#peak, refused: this.#refused };
  }

  /**
   * run calls fn once a slot is free and returns its result; `source` is the client's address
   * (undefined: counted under one shared key). When every slot is taken it rejects at once with
   * ATLSError("busy") if the source already has maxPerSource handshakes waiting or the queue is full.
   */
  async run<T>(source: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (this.#running < this.#max) {
      this.#running++;
    } else {
      const key = source ?? "";
      const mine = this.#waitingOf.get(key) ?? 0;
      if (mine >= this.#maxPerSource) throw this.#busy(`${mine} handshakes from ${source ?? "this source"} waiting`);
      if (this.#waiting.length >= this.#maxQueued) throw this.#busy(`${this.#running} handshakes running and ${this.#waiting.length} waiting`);
      this.#waitingOf.set(key, mine + 1);
      try {
        // The slot is handed over by the finishing handshake (running stays the same).
        await new Promise<void>((resolve) => this.#waiting.push(resolve));
      } finally {
        const n = (this.#waitingOf.get(key) ?? 1) - 1;
        if (n > 0) this.#waitingOf.set(key, n);
        else this.#waitingOf.delete(key);
      }
    }
    this.#peak = Math.max(this.#peak, this.#running);
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }

  #busy(why: string): ATLSError {
    this.#refused++;
    return new ATLSError("busy", `server busy: ${why}; handshake refused, retry later`, { retryable: true });
  }
}

function positive(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`HandshakeLimiter: ${field} must be a positive integer, got ${n}`);
  return n;
}

function nonNegative(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`HandshakeLimiter: ${field} must be a non-negative integer, got ${n}`);
  return n;
}
