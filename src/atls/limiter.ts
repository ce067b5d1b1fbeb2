import { ATLSError } from "./errors.js";

/** HandshakeLimiterOptions bound the attestation work unauthenticated ClientHellos can cause. */
export interface HandshakeLimiterOptions {
  /** maxConcurrent is how many issuer calls (key generation + quote/report) run at once; undefined: 4. */
  maxConcurrent?: number;
  /** maxQueued is how many handshakes may wait for a slot; undefined: 32. Past it: busy at once. */
  maxQueued?: number;
  /**
   * maxPerSource bounds running plus waiting handshakes of one source address, so one flooding
   * host cannot fill the queue and starve everyone else; undefined: 4.
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
  readonly #perSource = new Map<string, number>();
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
   * (undefined: counted under one shared key). It rejects at once with ATLSError("busy") when the
   * source already has maxPerSource handshakes, or every slot is taken and the queue is full.
   */
  async run<T>(source: string | undefined, fn: () => Promise<T>): Promise<T> {
    const key = source ?? "";
    const mine = this.#perSource.get(key) ?? 0;
    if (mine >= this.#maxPerSource) throw this.#busy(`${mine} handshakes from ${source ?? "this source"} in progress`);
    if (this.#running >= this.#max && this.#waiting.length >= this.#maxQueued) {
      throw this.#busy(`${this.#running} handshakes running and ${this.#waiting.length} waiting`);
    }
    this.#perSource.set(key, mine + 1);
    try {
      if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      else this.#running++;
      this.#peak = Math.max(this.#peak, this.#running);
      try {
        return await fn();
      } finally {
        // Hand the slot straight to the next waiter (running stays the same), or free it.
        const next = this.#waiting.shift();
        if (next) next();
        else this.#running--;
      }
    } finally {
      const n = (this.#perSource.get(key) ?? 1) - 1;
      if (n > 0) this.#perSource.set(key, n);
      else this.#perSource.delete(key);
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
