// meshd without --measurements holds peers to the policy its own verified evidence shows ("measured
// like itself"), and says so in its log; a peer measured otherwise is refused by that policy.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SimulatedSNPIssuer } from "../../src/attestation/snp-simulated.js";
import { sharedSimulatedSNPChain } from "../../src/attestation/snp-test-chain.js";
import { validatorsFor } from "../../src/attestation/validators.js";
import { peerPolicy } from "../../src/cmd/peer-policy.js";
import { createLogger } from "../../src/shared/logger.js";

describe("meshd without --measurements", () => {
  it("expects peers measured like itself, logs the policy and its root, and refuses a peer measured otherwise", async () => {
    const lines: string[] = [];
    const logger = createLogger((l) => lines.push(l), { level: "info", component: "meshd" });
    const self = new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() });
    const policy = await peerPolicy({ measurements: undefined }, self, logger);
    const log = lines.join("\n");
    expect(log).toMatch(/no --measurements: expecting peers measured like this one/);
    expect(log).toMatch(/test root: this policy allows simulated hardware only/);
    expect(policy.snp?.measurement).toBeDefined();
    expect(policy.tpm).toBeUndefined(); // only the platform this peer has: a TPM document is refused

    const check = async (issuer: SimulatedSNPIssuer) => {
      const nonce = randomBytes(32);
      const userData = randomBytes(32);
      const [validator] = validatorsFor(policy);
      return validator.validate(await issuer.issue(nonce, userData), { nonce, userData, requireFresh: false });
    };
    expect((await check(new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() }))).ok).toBe(true);
    const other = await check(new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain(), measurement: Buffer.alloc(48, 7) }));
    expect(other.ok).toBe(false);
    expect(other.checks.filter((c) => c.status === "failed").map((c) => c.name)).toEqual([expect.stringMatching(/measurement/)]);
  });

  it("with --measurements it loads that file and logs nothing about its own evidence", async () => {
    const lines: string[] = [];
    const logger = createLogger((l) => lines.push(l), { level: "info", component: "meshd" });
    await expect(peerPolicy({ measurements: "/nonexistent/measurements.json" }, new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() }), logger)).rejects.toThrow(/measurements\.json/);
    expect(lines).toEqual([]);
  });
});
