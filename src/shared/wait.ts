/** PollOptions bound a waitFor. */
export interface PollOptions {
  /** what names the condition in the timeout error ("meshd of node1 listening"). */
  what: string;
  /** timeoutMs is how long to keep trying. */
  timeoutMs: number;
  /** intervalMs is the pause between attempts; undefined means 100. */
  intervalMs?: number;
}

/**
 * waitFor calls `probe` until it returns a value other than undefined, and resolves with it. A
 * probe that throws counts as "not yet" (the last error is named when time runs out); `abort`
 * may throw to give up at once (a process that exited). Rejects after timeoutMs.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined>, o: PollOptions, abort?: () => void): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  let last: unknown;
  for (;;) {
    abort?.();
    try {
      const v = await probe();
      if (v !== undefined) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? `: ${last.message.split("\n")[0]}` : "";
      throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${o.what}${why}`, { cause: last });
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
  }
}
