import { randomBytes, X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { execa } from "execa";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Tpm } from "../../src/attestation/native.js";
import { AK_NV, provisionSimulatedTpm, simulatedAKTemplate } from "../../src/attestation/tpm-provision.js";
import { openTPM, TPMIssuer } from "../../src/attestation/tpm-issuer.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { TPM_TEST_CA_CERT_PEM, TPM_TEST_CA_NAME } from "../../src/attestation/tpm-test-ca.js";
import { parseTPM2BPublic } from "../../src/attestation/tpm-structures.js";
import { startSwtpm, swtpmPolicy, type Swtpm } from "../helpers/swtpm.js";

/**
 * A simulated TPM is provisioned like a GCE vTPM (AK template and test-CA certificate in NV), the
 * issuer makes its AK from NV and carries the certificate, and the validator anchors the AK to the
 * test CA only when the policy allows the test root. A TPM without the NV indices cannot issue.
 */

process.env.TSS2_LOG ??= "all+none";

describe("simulated TPM provisioning and anchored documents", () => {
  let bare: Swtpm;
  beforeAll(async () => {
    bare = await startSwtpm({ provision: false });
  });
  afterAll(async () => {
    await bare?.stop();
  });

  it("a TPM without the AK's NV indices cannot issue: the error names the missing indices", async () => {
    await expect(openTPM(bare.tcti)).rejects.toThrow(/no AK template and certificate in NV \(ECC: template 0x01c10003 missing, certificate 0x01c10002 missing/);
  });

  it("provisionSimulatedTpm writes the template and certificate once (idempotent), readable in chunks", async () => {
    const tpm = await Tpm.open(bare.tcti);
    try {
      expect(await provisionSimulatedTpm(tpm)).toEqual([AK_NV.ecc.template, AK_NV.ecc.cert]);
      expect(await provisionSimulatedTpm(tpm)).toEqual([]);
      const listed = await tpm.nvList();
      expect(listed).toEqual(expect.arrayContaining([AK_NV.ecc.template, AK_NV.ecc.cert]));
      expect(await tpm.nvRead(AK_NV.ecc.template)).toEqual(simulatedAKTemplate("ecc"));
      // An index larger than one NV buffer round trip is read back whole.
      const big = randomBytes(1800);
      await tpm.nvDefineWrite(0x01c20fff, big);
      expect(await tpm.nvRead(0x01c20fff)).toEqual(big);
      await expect(tpm.nvDefineWrite(0x01c20fff, big)).rejects.toThrow(/Esys_NV_DefineSpace/);
    } finally {
      await tpm.close();
    }
  });

  for (const kind of ["ecc", "rsa"] as const) {
    it(`${kind} AK from NV: the document carries its certificate and verifies to the test CA only with tpm.allowTestRoot`, async () => {
      const swtpm = await startSwtpm({ provision: [kind] });
      const issuer = await openTPM(swtpm.tcti, { ak: { type: kind } });
      try {
        const nonce = randomBytes(32);
        const userData = randomBytes(32);
        const doc = await issuer.issue(nonce, userData);
        expect(Object.keys(JSON.parse(Buffer.from(doc).toString()))).toContain("akCertChain");
        const v = await createTPMValidator(swtpmPolicy()).validate(doc, { nonce, userData, requireFresh: true });
        expect(v.checks.filter((c) => c.status === "failed"), JSON.stringify(v.checks)).toEqual([]);
        expect(v.ok).toBe(true);
        expect(v.facts.akRoot).toBe(TPM_TEST_CA_NAME);
        expect(v.facts.akTestRoot).toBe("true");
        const strict = swtpmPolicy();
        strict.tpm.allowTestRoot = false;
        const refused = await createTPMValidator(strict).validate(doc, { nonce, userData });
        expect(refused.ok).toBe(false);
        const failed = refused.checks.filter((c) => c.status === "failed");
        expect(failed.map((c) => c.name)).toEqual(["ak anchoring"]);
        expect(failed[0].detail).toMatch(/test CA.*tpm\.allowTestRoot/);
      } finally {
        await issuer.close();
        await swtpm.stop();
      }
    });
  }

  it("an independent tool agrees: openssl verifies the NV AK certificate against the published test CA, and it certifies the AK", async () => {
    const swtpm = await startSwtpm();
    const issuer = await openTPM(swtpm.tcti);
    const dir = await mkdtemp(join(tmpdir(), "am-akcert-"));
    try {
      const doc = JSON.parse(Buffer.from(await issuer.issue(randomBytes(32), randomBytes(32))).toString()) as { akCertChain: string[] };
      const pem = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
      await writeFile(join(dir, "ca.pem"), TPM_TEST_CA_CERT_PEM);
      await writeFile(join(dir, "ak.pem"), pem(Buffer.from(doc.akCertChain[0], "base64")));
      const r = await execa("openssl", ["verify", "-CAfile", join(dir, "ca.pem"), join(dir, "ak.pem")], { reject: false });
      expect(r.stdout + r.stderr).toMatch(/ak\.pem: OK/);
      const certKey = new X509Certificate(Buffer.from(doc.akCertChain[0], "base64")).publicKey.export({ type: "spki", format: "der" });
      expect(certKey).toEqual(parseTPM2BPublic(issuer.akPublic).key.export({ type: "spki", format: "der" }));
    } finally {
      await issuer.close();
      await swtpm.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an AK certificate in NV for another key is refused by the issuer", async () => {
    const a = await startSwtpm();
    const b = await startSwtpm({ provision: false });
    const ta = await Tpm.open(a.tcti);
    const tb = await Tpm.open(b.tcti);
    try {
      // b gets the template, but a's certificate: it certifies a's AK, not b's.
      await tb.nvDefineWrite(AK_NV.ecc.template, simulatedAKTemplate("ecc"));
      await tb.nvDefineWrite(AK_NV.ecc.cert, await ta.nvRead(AK_NV.ecc.cert));
      await expect(TPMIssuer.create(tb)).rejects.toThrow(/AK certificate in NV 0x01c10002 certifies another key/);
    } finally {
      await ta.close();
      await tb.close();
    }
  });
});
