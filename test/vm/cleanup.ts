/**
 * Last-resort cleanup of the VM tier. Every cluster registers its synchronous teardown with the
 * process-wide hooks of src/localmesh/cleanup.ts (process exit, SIGINT, SIGTERM), and whatever
 * clusters a test file left alive are destroyed after it (vitest afterAll). A SIGKILLed test
 * process runs nothing: QEMU and swtpm die with it (setpriv --pdeathsig), and the next harness
 * sweeps its namespace and work dir (NetnsHarness.attachDir).
 */
import { afterAll } from "vitest";

import { registerCleanup } from "../../src/localmesh/cleanup.js";

/** Destroyable is what the registry needs from a cluster. */
export interface Destroyable {
  destroy(): Promise<void>;
  destroySync(): void;
}

const live = new Set<Destroyable>();

/** registerCluster tracks a cluster until the returned function is called (from its destroySync). */
export function registerCluster(c: Destroyable): () => void {
  live.add(c);
  const unregister = registerCleanup(() => c.destroySync());
  return () => {
    live.delete(c);
    unregister();
  };
}

/** destroyAllClusters destroys every live cluster; never throws. */
export async function destroyAllClusters(): Promise<void> {
  await Promise.allSettled([...live].map((c) => c.destroy()));
}

try {
  afterAll(destroyAllClusters, 60_000);
} catch {
  // imported outside a vitest collection phase: the exit and signal hooks still clean up
}
