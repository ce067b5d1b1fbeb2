import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { CaptureError, capturePolicy } from "../../src/attestation/policy-capture.js";
import { parsePolicy, policyToJSON } from "../../src/attestation/policy.js";
import { SIMULATED_SNP_MEASUREMENT, SimulatedSNPIssuer } from "../../src/attestation/snp-simulated.js";
import { encodeDocument, forgedTPMIssuer, gceDir, loadGCEEvidence } from "../helpers/tpm-builder.js";

/**
 * Trust on first use (meshctl measurements --from, meshd without --measurements): a policy is
 * captured only from evidence that verifies and is anchored to a known root; it never pins PCR
 * 10-12 and says when the root is a test root.
 */
describe("capturePolicy", () => {
  it("real GCE evidence: PCRs 0-9 pinned, Google's root, no test root; the policy parses and round-trips", async () => {
    const gce = await loadGCEEvidence();
    const doc = encodeDocument({ akPublic: gce.akPublic, quote: gce.quote, signature: gce.signature, pcrs: gce.pcrs, userData: new Uint8Array(0), akCertChain: [new Uint8Array(readFileSync(new URL("ak_cert.der", gceDir)))] });
    const got = await capturePolicy("tpm", doc, {});
    expect(got.root).toMatch(/^Google EK\/AK CA/);
    expect(got.testRoot).toBe(false);
    expect([...got.policy.tpm!.pcrs.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(got.policy.tpm!.pcrs.get(0)).toBe(Buffer.from(gce.pcrs.get(0)!).toString("hex"));
    expect(got.policy.tpm!.allowTestRoot).toBe(false);
    expect(parsePolicy(JSON.parse(JSON.stringify(policyToJSON(got.policy))))).toEqual(got.policy);
  });

  it("forged TPM evidence (no AK certificate, or a self-made one) captures nothing, naming ak anchoring", async () => {
    for (const chain of ["none", "self-made"] as const) {
      const nonce = randomBytes(32);
      const userData = randomBytes(32);
      const doc = await forgedTPMIssuer(chain).issue(nonce, userData);
      const err = await capturePolicy("tpm", doc, { nonce, userData }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CaptureError);
      expect((err as Error).message).toMatch(/ak anchoring/);
    }
  });

  it("evidence bound to another handshake captures nothing (nonce binding)", async () => {
    const issuer = new SimulatedSNPIssuer();
    const doc = await issuer.issue(randomBytes(32), randomBytes(32));
    const err = await capturePolicy("snp", doc, { nonce: randomBytes(32) }, { snpTestRoots: [await issuer.testRoot()] }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/nonce binding/);
  });

  it("a simulated SEV-SNP processor: its measurement, flagged as a test root, allowTestRoot set", async () => {
    const issuer = new SimulatedSNPIssuer();
    const nonce = randomBytes(32);
    const userData = randomBytes(32);
    const got = await capturePolicy("snp", await issuer.issue(nonce, userData), { nonce, userData }, { snpTestRoots: [await issuer.testRoot()] });
    expect(got.testRoot).toBe(true);
    expect(got.root).toMatch(/test root/);
    expect(got.policy).toEqual({ snp: expect.objectContaining({ measurement: SIMULATED_SNP_MEASUREMENT, allowTestRoot: true, allowDebug: false, maxVmpl: 0 }) });
    expect(got.policy.tpm).toBeUndefined();
  });
});
