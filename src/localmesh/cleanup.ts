/**
 * Process-wide last-resort teardown: synchronous cleanups that run once when the process exits
 * (normally or through process.exit) or receives SIGINT/SIGTERM. Whoever owns a resource still
 * releases it in its own close(); these hooks only catch what a crash, a failing test or Ctrl-C
 * left behind. A process killed with SIGKILL runs nothing: netns.ts sweeps what such a process left.
 */

/** Cleanup is a synchronous teardown step; it must never throw and must be idempotent. */
export type Cleanup = () => void;

const cleanups = new Set<Cleanup>();
let hooksInstalled = false;

/**
 * registerCleanup adds `fn` to the steps run on exit, SIGINT and SIGTERM (in registration order)
 * and returns a function that removes it again (call that from the owner's close()).
 */
export function registerCleanup(fn: Cleanup): () => void {
  installHooks();
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

/** runCleanups runs and forgets every registered step now; a throwing step does not stop the others. */
export function runCleanups(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // last-resort path: keep tearing down the rest
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", runCleanups);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      runCleanups();
      // Listening replaced the default action; if nobody else handles the signal, die of it as intended.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}
