/**
 * Mutex runs async critical sections one at a time, in call order (FIFO). A section that throws
 * releases the lock like one that returns. Safe to share between any number of callers.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  /** run waits for every earlier section to settle, then runs `fn` and returns its result. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    this.waiting++;
    const result = this.tail.then(async () => {
      try {
        return await fn();
      } finally {
        this.waiting--;
      }
    });
    // The next section waits for this one to settle, never for its success.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** pending is the number of sections queued or running (for tests and diagnostics). */
  get pending(): number {
    return this.waiting;
  }
}

/**
 * cryptsetupMutex serializes every cryptsetup invocation of this process, across all LUKSDisk
 * instances: libcryptsetup is not thread-safe and concurrent header writers would race.
 * (Other processes are kept out by cryptsetup's own LUKS2 metadata locks.)
 */
export const cryptsetupMutex = new Mutex();
