import type { Readable } from "node:stream";
import { CoreError, InvalidArgumentError } from "../core/errors.js";

/**
 * StreamReader turns a gRPC stream's events into awaited messages, each with its own timeout, so a
 * protocol step can say exactly which message is missing. Not safe for concurrent next() calls.
 */
export class StreamReader<T> {
  readonly #queue: T[] = [];
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;

  constructor(stream: Readable) {
    stream.on("data", (m: T) => {
      this.#queue.push(m);
      this.#wake?.();
    });
    stream.on("end", () => {
      this.#ended = true;
      this.#wake?.();
    });
    stream.on("error", (err: unknown) => {
      this.#error = err;
      this.#wake?.();
    });
    // A server-side gRPC stream reports a client that went away only as 'cancelled'.
    stream.on("cancelled", () => {
      this.#error ??= new CoreError("unavailable", "the stream was cancelled by the other side");
      this.#wake?.();
    });
  }

  /** next returns the next message; `what` names it in errors (stream ended, timed out, failed). */
  async next(what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.#queue.shift();
      if (m !== undefined) return m;
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) throw new InvalidArgumentError(`stream ended before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new CoreError("deadline-exceeded", `timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}
