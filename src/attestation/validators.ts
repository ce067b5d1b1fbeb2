import type { Validator } from "./attestation.js";
import { loadPolicy, type MeasurementPolicy } from "./policy.js";
import { capturingValidators } from "./policy-capture.js";
import { simulatedSNPTestRoot } from "./snp-test-chain.js";
import { createSNPValidator } from "./snp-validator.js";
import { createTPMValidator } from "./tpm-validator.js";

/**
 * validatorsFor returns validators only for the platforms `policy` names (an SNP-only policy gets no
 * TPM validator, so a TPM document fails the handshake: no validator for its OID). The validators
 * know the shared simulated SEV-SNP test root and the simulated-TPM test CA, but accept them only
 * when the policy's section says allowTestRoot (never set it for real hardware). meshd and meshctl
 * both use it.
 */
export function validatorsFor(policy: MeasurementPolicy): Validator[] {
  const snpTestRoots = [simulatedSNPTestRoot()];
  const out: Validator[] = [];
  if (policy.tpm) out.push(createTPMValidator(policy, { snpTestRoots }));
  if (policy.snp) out.push(createSNPValidator(policy, { testRoots: snpTestRoots }));
  return out;
}

/** loadValidators reads measurements.json (PolicyError if it is missing or wrong) and returns its validators. */
export async function loadValidators(measurementsFile: string): Promise<Validator[]> {
  return validatorsFor(await loadPolicy(measurementsFile));
}

/** tofuValidators are the validators of `meshctl measurements --from` (policy-capture.ts), with the shared test roots known. */
export function tofuValidators(): ReturnType<typeof capturingValidators> {
  return capturingValidators({ snpTestRoots: [simulatedSNPTestRoot()] });
}
