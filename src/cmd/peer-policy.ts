import { randomBytes } from "node:crypto";
import type { Issuer } from "../attestation/attestation.js";
import { loadPolicy, policyToJSON, type MeasurementPolicy } from "../attestation/policy.js";
import { capturePolicy } from "../attestation/policy-capture.js";
import { simulatedSNPTestRoot } from "../attestation/snp-test-chain.js";
import { errorMessage, FailedPreconditionError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import type { MeshdConfig } from "./flags.js";

/**
 * peerPolicy is the measurement policy meshd holds other peers to: --measurements, or without it
 * the policy this peer's own verified evidence shows (peers measured like itself), logged clearly.
 */
export async function peerPolicy(config: Pick<MeshdConfig, "measurements">, issuer: Issuer, logger: Logger): Promise<MeasurementPolicy> {
  if (config.measurements !== undefined) return loadPolicy(config.measurements);
  const nonce = randomBytes(32);
  const userData = randomBytes(32);
  const own = await capturePolicy(issuer.platform, await issuer.issue(nonce, userData), { nonce, userData }, { snpTestRoots: [simulatedSNPTestRoot()] }).catch((err: unknown) => {
    throw new FailedPreconditionError(`no --measurements, and this peer's own evidence does not verify to derive one: ${errorMessage(err)}`, { cause: err });
  });
  logger.warn("no --measurements: expecting peers measured like this one (the policy its own verified evidence shows)", {
    policy: JSON.stringify(policyToJSON(own.policy)),
    root: own.root,
    ...(own.testRoot ? { testRoot: "a test root: this policy allows simulated hardware only" } : {}),
  });
  return own.policy;
}

