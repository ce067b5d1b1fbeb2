import type { Validator } from "../attestation/attestation.js";
import { loadPolicy, type MeasurementPolicy } from "../attestation/policy.js";
import { createSNPValidator } from "../attestation/snp-validator.js";
import { createTPMValidator } from "../attestation/tpm-validator.js";

/** validatorsFor returns the validators of every platform under one measurement policy. */
export function validatorsFor(policy: MeasurementPolicy): Validator[] {
  return [createTPMValidator(policy), createSNPValidator(policy)];
}

/** loadValidators reads measurements.json (or takes the defaults) and returns the validators. */
export async function loadValidators(measurementsFile: string | undefined): Promise<Validator[]> {
  return validatorsFor(await loadPolicy(measurementsFile));
}
