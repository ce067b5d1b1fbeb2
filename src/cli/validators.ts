import { howToGetPolicy } from "../attestation/policy.js";
import { UsageError } from "./command.js";

/**
 * measurementsFlag returns the --measurements value. There is no default policy ("skipped means
 * fine" is gone): without the flag it throws a UsageError saying how to get one. The validators
 * themselves come from attestation/validators.ts (meshd uses them too).
 */
export function measurementsFlag(values: Record<string, string | boolean | undefined>): string {
  const v = values.measurements;
  if (typeof v !== "string" || v === "") throw new UsageError(`--measurements is required: no peer is trusted without a measurement policy; ${howToGetPolicy}`);
  return v;
}
