import { waitFor } from "../../src/shared/wait.js";

/** until polls `cond` every 25 ms until it holds, or throws naming `what` after timeoutMs (a bounded poll, never a fixed sleep; shared/wait.ts). */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => ((await cond()) ? true : undefined), { what, timeoutMs, intervalMs: 25 });
}

/** caught awaits a promise that must reject and returns its error; it throws if the promise resolves. */
export async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}
