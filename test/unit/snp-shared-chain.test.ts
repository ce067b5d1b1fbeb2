import { describe, expect, it } from "vitest";
import { defaultPolicy } from "../../src/attestation/policy.js";
import { SIMULATED_SNP_MEASUREMENT, SimulatedSNPIssuer } from "../../src/attestation/snp-simulated.js";
import { sharedSimulatedSNPChain } from "../../src/attestation/snp-test-chain.js";
import { validatorsFor } from "../../src/attestation/validators.js";

describe("shared simulated SEV-SNP chain (meshd --snp simulated)", () => {
  const nonce = Buffer.alloc(32, 5);
  const userData = Buffer.alloc(32, 6);

  it("meshctl's validators accept its reports only when the policy allows the test root", async () => {
    const doc = await new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() }).issue(nonce, userData);
    const snp = (allow: boolean) => {
      const p = defaultPolicy();
      p.snp.allowTestRoot = allow;
      p.snp.measurement = SIMULATED_SNP_MEASUREMENT;
      return validatorsFor(p).find((v) => v.platform === "snp")!;
    };
    const denied = await snp(false).validate(doc, { nonce, userData });
    expect(denied.ok).toBe(false);
    expect(denied.checks.find((c) => c.name === "cert chain")!.status).toBe("failed");
    const allowed = await snp(true).validate(doc, { nonce, userData });
    expect(allowed.ok, JSON.stringify(allowed.checks)).toBe(true);
  });
});
