import type { Validator } from "../attestation/attestation.js";
import { howToGetPolicy, loadPolicy, type MeasurementPolicy } from "../attestation/policy.js";
import { UsageError } from "./command.js";
import { capturingValidators } from "../attestation/policy-capture.js";
import { simulatedSNPTestRoot } from "../attestation/snp-test-chain.js";
import { createSNPValidator } from "../attestation/snp-validator.js";
import { createTPMValidator } from "../attestation/tpm-validator.js";

/**
 * validatorsFor returns validators only for the platforms `policy` names (an SNP-only policy gets no
 * TPM validator, so a TPM document fails the handshake: no validator for its OID). The validators
 * know the shared simulated SEV-SNP test root and the simulated-TPM test CA, but accept them only
 * when the policy's section says allowTestRoot (never set it for real hardware).
 */
export function validatorsFor(policy: MeasurementPolicy): Validator[] {
  const snpTestRoots = [simulatedSNPTestRoot()];
  const out: Validator[] = [];
  if (policy.tpm) out.push(createTPMValidator(policy, { snpTestRoots }));
  if (policy.snp) out.push(createSNPValidator(policy, { testRoots: snpTestRoots }));
  return out;
}

/**
 * measurementsFlag returns the --measurements value. There is no default policy ("skipped means
 * fine" is gone): without the flag it throws a UsageError saying how to get one.
 */
export function measurementsFlag(values: Record<string, string | boolean | undefined>): string {
  const v = values.measurements;
  if (typeof v !== "string" || v === "") throw new UsageError(`--measurements is required: no peer is trusted without a measurement policy; ${howToGetPolicy}`);
  return v;
}

/** loadValidators reads measurements.json (PolicyError if it is missing or wrong) and returns its validators. */
export async function loadValidators(measurementsFile: string): Promise<Validator[]> {
  return validatorsFor(await loadPolicy(measurementsFile));
}

/** tofuValidators are the validators of `meshctl measurements --from` (policy-capture.ts), with the shared test roots known. */
export function tofuValidators(): ReturnType<typeof capturingValidators> {
  return capturingValidators({ snpTestRoots: [simulatedSNPTestRoot()] });
}
