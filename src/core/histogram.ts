/** defaultLatencyBoundsMs are the upper bounds (ms) of the propagation histogram's buckets. */
export const defaultLatencyBoundsMs: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000];

/** HistogramSnapshot is a histogram's state, in the shape a metrics exporter needs (cumulative or not). */
export interface HistogramSnapshot {
  /** bounds are the buckets' inclusive upper bounds; counts has one more entry, the overflow (+Inf). */
  bounds: readonly number[];
  counts: number[];
  count: number;
  sum: number;
  max: number;
}

/**
 * Histogram counts observations in fixed buckets (Prometheus-style: bucket i holds values
 * ≤ bounds[i] and > bounds[i-1]). Constant memory; observe is O(log buckets). Not thread-shared.
 */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #count = 0;
  #sum = 0;
  #max = 0;

  /** constructor takes strictly increasing bucket bounds (default defaultLatencyBoundsMs). */
  constructor(bounds: readonly number[] = defaultLatencyBoundsMs) {
    if (bounds.length === 0 || bounds.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= bounds[i - 1]))) {
      throw new RangeError("Histogram: bounds must be finite and strictly increasing");
    }
    this.#bounds = [...bounds];
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  /** observe records one value (negative values count as 0). */
  observe(value: number): void {
    const v = Math.max(0, value);
    let lo = 0;
    let hi = this.#bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (v <= this.#bounds[mid]) hi = mid;
      else lo = mid + 1;
    }
    this.#counts[lo]++;
    this.#count++;
    this.#sum += v;
    if (v > this.#max) this.#max = v;
  }

  /** quantile returns the upper bound of the bucket holding quantile q (0-1), max for the overflow; 0 when empty. */
  quantile(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return i < this.#bounds.length ? Math.min(this.#bounds[i], this.#max) : this.#max;
    }
    return this.#max;
  }

  /** snapshot copies the histogram's state. */
  snapshot(): HistogramSnapshot {
    return { bounds: this.#bounds, counts: [...this.#counts], count: this.#count, sum: this.#sum, max: this.#max };
  }
}
