import type { Clock } from "./clock.js";

/** TokenBucketOptions size a KeyedTokenBuckets. */
export interface TokenBucketOptions {
  /** burst is how many calls one key may make at once (the bucket's size). */
  burst: number;
  /** perSecond is how many tokens a key regains per second. */
  perSecond: number;
  /** maxKeys bounds how many keys are tracked; past it the longest-untouched key is forgotten. Undefined: 4096. */
  maxKeys?: number;
  clock: Clock;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * KeyedTokenBuckets is one token bucket per key (a caller's address): take() spends a token or
 * says no. Memory is bounded by maxKeys (forgetting a key only ever gives it a full bucket again,
 * so an attacker with many addresses gains at most `burst` calls per address). Not thread-aware;
 * safe for concurrent use in one event loop.
 */
export class KeyedTokenBuckets {
  readonly #o: Required<Omit<TokenBucketOptions, "clock">> & { clock: Clock };
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: TokenBucketOptions) {
    if (!(options.burst >= 1) || !(options.perSecond > 0)) throw new RangeError("KeyedTokenBuckets: burst must be ≥ 1 and perSecond > 0");
    this.#o = { maxKeys: 4096, ...options };
  }

  /** take spends one of key's tokens and returns true, or returns false when key has none left. */
  take(key: string): boolean {
    const now = this.#o.clock.now();
    const b = this.#buckets.get(key) ?? { tokens: this.#o.burst, at: now };
    b.tokens = Math.min(this.#o.burst, b.tokens + ((now - b.at) / 1000) * this.#o.perSecond);
    b.at = now;
    // Re-insert so Map order is least recently used first.
    this.#buckets.delete(key);
    this.#buckets.set(key, b);
    if (this.#buckets.size > this.#o.maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** size is the number of tracked keys. */
  get size(): number {
    return this.#buckets.size;
  }
}
