import type { Validator } from "../attestation/attestation.js";
import { loadPolicy, type MeasurementPolicy } from "../attestation/policy.js";
import { simulatedSNPTestRoot } from "../attestation/snp-test-chain.js";
import { createSNPValidator } from "../attestation/snp-validator.js";
import { createTPMValidator } from "../attestation/tpm-validator.js";

/**
 * validatorsFor returns the validators of every platform under one measurement policy. The SNP
 * validator knows the shared simulated test root, but accepts it only when the policy says
 * allowTestRoot (never set it for real hardware).
 */
export function validatorsFor(policy: MeasurementPolicy): Validator[] {
  return [createTPMValidator(policy), createSNPValidator(policy, { testRoots: [simulatedSNPTestRoot()] })];
}

/** loadValidators reads measurements.json (or takes the defaults) and returns the validators. */
export async function loadValidators(measurementsFile: string | undefined): Promise<Validator[]> {
  return validatorsFor(await loadPolicy(measurementsFile));
}
