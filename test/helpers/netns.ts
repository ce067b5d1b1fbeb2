/**
 * The network-namespace harness of the e2e tests. It lives in src/localmesh/netns.ts (localmesh
 * uses it too); this module re-exports it and adds canRunE2E, the tests' skip decision.
 */
import { missingRequirements, netnsTools } from "../../src/localmesh/requirements.js";

export { NetnsHarness, randomHex, underlayPrefix, type ExecResult, type NetnsNode } from "../../src/localmesh/netns.js";

/**
 * canRunE2E returns why namespace e2e tests cannot run here (not root, a tool — `netnsTools` plus
 * `extraTools` — or /dev/net/tun missing, namespaces not creatable), or undefined when they can.
 * With AM_REQUIRE_E2E=1 in the environment it throws instead, so CI on a capable machine cannot
 * silently skip.
 */
export function canRunE2E(extraTools: readonly string[] = []): string | undefined {
  const reasons = missingRequirements([...netnsTools, ...extraTools]);
  const reason = reasons.length > 0 ? reasons.join("; ") : undefined;
  if (reason && process.env.AM_REQUIRE_E2E === "1") throw new Error(`e2e required (AM_REQUIRE_E2E=1) but cannot run: ${reason}`);
  return reason;
}
