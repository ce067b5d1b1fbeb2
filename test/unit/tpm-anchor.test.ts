import { createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { parsePolicy, type MeasurementPolicy } from "../../src/attestation/policy.js";
import { parseCertificate } from "../../src/attestation/snp-certs.js";
import { GOOGLE_AK_ROOTS } from "../../src/attestation/tpm-ak-roots.js";
import { parseHCLReport } from "../../src/attestation/tpm-hcl.js";
import { buildCertificate, nameDER } from "../../src/attestation/tpm-test-ca.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { ALG, buildEvidence, builderPolicy, encodeDocument, loadGCEEvidence, makeAK, marshalQuote, pcrValues, signQuote, testAKCertChain, type DocumentParts } from "../helpers/tpm-builder.js";

/**
 * Finding 1 of issue 10: a quote counts only if its AK is vouched for by a root the policy trusts.
 * The software forgery (a P-256 key claiming the restricted-signing bits, any PCRs) is refused at
 * "ak anchoring"; the real GCE quote verifies to Google's EK/AK CA and the real Azure quote through
 * its HCL report's SNP report; every substitution is refused.
 */

const gceDir = new URL("../../../shared/evidence/tpm/gce-cos85/", import.meta.url);
const azureDir = new URL("../../../shared/evidence/tpm/azure-cvm-hcl/", import.meta.url);
const read = (dir: URL, f: string): Uint8Array => new Uint8Array(readFileSync(new URL(f, dir)));
const pemCerts = (dir: URL, f: string): Uint8Array[] =>
  [...readFileSync(new URL(f, dir), "utf8").matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => new Uint8Array(Buffer.from(m[1].replace(/\s/g, ""), "base64")));
const failedOf = (v: { checks: { name: string; status: string }[] }): string[] => v.checks.filter((c) => c.status === "failed").map((c) => c.name);
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("the software forgery of finding 1", () => {
  const ak = makeAK("ecc-p256");
  const nonce = randomBytes(32);
  const userData = randomBytes(32);
  const pcrs = pcrValues([...Array(24).keys()]);
  const policy = builderPolicy(pcrs);

  it("a P-256 key claiming to be a restricted AK, with any PCRs and no certificate, is refused at ak anchoring", async () => {
    const v = await createTPMValidator(policy).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs })), { nonce, userData, requireFresh: true });
    expect(v.ok).toBe(false);
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/nothing vouches for the AK/);
  });

  it("the same forgery with a self-made AK certificate (self-signed CA) is refused at ak anchoring", async () => {
    const ca = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const chain = testAKCertChain(ak, { signer: ca.privateKey, issuer: nameDER("Totally Google CA") });
    const v = await createTPMValidator(policy).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs, akCertChain: chain })), { nonce, userData });
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/no pinned root/);
  });

  it("a forged certificate claiming Google's intermediate as issuer is refused (the signature does not verify)", async () => {
    const ca = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const chain = testAKCertChain(ak, { signer: ca.privateKey, issuer: googleIntermediateSubject() });
    const v = await createTPMValidator(policy).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs, akCertChain: chain })), { nonce, userData });
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/signature does not verify with shipped intermediate/);
  });

  it("a test-CA certificate is refused without tpm.allowTestRoot, naming the setting", async () => {
    const strict: MeasurementPolicy = { tpm: { ...policy.tpm!, allowTestRoot: false } };
    const v = await createTPMValidator(strict).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs, akCertChain: testAKCertChain(ak) })), { nonce, userData });
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/tpm\.allowTestRoot/);
    const allowed = await createTPMValidator(policy).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs, akCertChain: testAKCertChain(ak) })), { nonce, userData });
    expect(failedOf(allowed)).toEqual([]);
    expect(allowed.facts.akTestRoot).toBe("true");
  });

  it("an expired AK certificate is refused", async () => {
    const chain = testAKCertChain(ak, { notAfter: new Date("2025-06-01T00:00:00Z") });
    const v = await createTPMValidator(policy).validate(encodeDocument(buildEvidence({ ak, nonce, userData, pcrs, akCertChain: chain })), { nonce, userData });
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/not valid now/);
  });
});

/** googleIntermediateSubject is the subject Name DER of Google's shipped intermediate (the issuer of GCE AK certificates). */
function googleIntermediateSubject(): Uint8Array {
  return parseCertificate(read(gceDir, "tpm_ek_intermediate_2.crt")).subject;
}

describe("real GCE evidence: the AK certificate chains to Google's EK/AK CA", () => {
  const gcePolicy = async (): Promise<MeasurementPolicy> => {
    const gce = await loadGCEEvidence();
    return parsePolicy({ tpm: { pcrs: { "0": hex(gce.pcrs.get(0)!), "7": hex(gce.pcrs.get(7)!) } } });
  };
  const gceParts = async (): Promise<DocumentParts> => {
    const gce = await loadGCEEvidence();
    return { akPublic: gce.akPublic, quote: gce.quote, signature: gce.signature, pcrs: gce.pcrs, userData: new Uint8Array(0) };
  };
  const akCert = read(gceDir, "ak_cert.der");
  const intermediate = read(gceDir, "tpm_ek_intermediate_2.crt");

  for (const tc of [
    { name: "the AK certificate alone (the shipped intermediate completes the chain)", chain: () => [akCert] },
    { name: "the AK certificate and its intermediate", chain: () => [akCert, intermediate] },
  ]) {
    it(`verifies with ${tc.name}, naming Google's root`, async () => {
      const v = await createTPMValidator(await gcePolicy()).validate(encodeDocument({ ...(await gceParts()), akCertChain: tc.chain() }), {});
      expect(failedOf(v), JSON.stringify(v.checks)).toEqual([]);
      expect(v.ok).toBe(true);
      expect(v.facts.akRoot).toBe(GOOGLE_AK_ROOTS[0].name);
      expect(v.facts.akTestRoot).toBeUndefined();
      expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/chains to Google EK\/AK CA/);
    });
  }

  it("the same quote without a certificate is refused at ak anchoring", async () => {
    const v = await createTPMValidator(await gcePolicy()).validate(encodeDocument(await gceParts()), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
  });

  it("the same quote with a self-made AK certificate for its AK is refused", async () => {
    const ca = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const gce = await loadGCEEvidence();
    const cert = buildCertificate({
      issuer: googleIntermediateSubject(), subject: nameDER("forged GCE AK"), spki: createPublicKey(gce.akPEM).export({ type: "spki", format: "der" }),
      serial: Uint8Array.of(7), notBefore: new Date("2025-01-01T00:00:00Z"), notAfter: new Date("2100-01-01T00:00:00Z"), ca: false, signer: ca.privateKey,
    });
    const v = await createTPMValidator(await gcePolicy()).validate(encodeDocument({ ...(await gceParts()), akCertChain: [cert] }), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
  });

  it("Google's real AK certificate next to another key's quote is refused (the certificate is for another key)", async () => {
    const ak = makeAK("rsa-rsassa");
    const parts = buildEvidence({ ak, nonce: randomBytes(32), userData: new Uint8Array(0), pcrs: (await loadGCEEvidence()).pcrs, akCertChain: [akCert] });
    const v = await createTPMValidator(await gcePolicy()).validate(encodeDocument(parts), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/certifies another key/);
  });

  it("an SNP-only policy refuses the GCE document (the policy names no tpm section)", async () => {
    const v = await createTPMValidator({ snp: { measurement: "00".repeat(48), allowDebug: false, maxVmpl: 0, minTcb: { bootloader: 0, tee: 0, snp: 0, microcode: 0 }, allowTestRoot: false } })
      .validate(encodeDocument({ ...(await gceParts()), akCertChain: [akCert] }), {});
    expect(v.ok).toBe(false);
    expect(v.checks.find((c) => c.name === "policy pcrs")?.detail).toMatch(/names no tpm section/);
  });
});

describe("real Azure CVM evidence: the AK is vouched for by the HCL report's SNP report", () => {
  const expectedSNP = JSON.parse(readFileSync(new URL("expected_snp.json", azureDir), "utf8")) as { measurement: string };
  const pcrBin = read(azureDir, "pcrs_sha256_0-23.bin");
  const pcrs = new Map([...Array(24).keys()].map((i) => [i, pcrBin.slice(i * 32, i * 32 + 32)]));
  const akKey = createPublicKey(readFileSync(new URL("ak_pub.pem", azureDir), "utf8"));
  const [vcek, ask, ark] = pemCerts(azureDir, "vcek_ask_ark_chain.pem") as [Uint8Array, Uint8Array, Uint8Array];
  const hclReport = read(azureDir, "hcl_report.bin");
  const now = (): Date => new Date("2026-01-01T00:00:00Z");
  const policy = (): MeasurementPolicy =>
    parsePolicy({ tpm: { pcrs: { "0": hex(pcrs.get(0)!), "7": hex(pcrs.get(7)!) } }, snp: { measurement: expectedSNP.measurement } });
  const parts = (over: Partial<DocumentParts> = {}): DocumentParts => ({
    akPublic: makeAK("rsa-rsassa", { publicKey: akKey }).tpm2bPublic,
    quote: read(azureDir, "tpm_quote_attest.bin"),
    signature: read(azureDir, "tpm_quote_sig_tpmt.bin"),
    pcrs,
    userData: new Uint8Array(0),
    hcl: { hclReport, vcek, certChain: [ask, ark] },
    ...over,
  });

  it("verifies through its SNP report, naming AMD's ARK via the HCL report", async () => {
    const v = await createTPMValidator(policy(), { now }).validate(encodeDocument(parts()), {});
    expect(failedOf(v), JSON.stringify(v.checks)).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.facts.akRoot).toMatch(/AMD SEV-SNP ARK \(Milan\) via the Azure HCL report/);
  });

  it("one changed byte of the runtime claims is refused (report_data no longer binds them)", async () => {
    const changed = Uint8Array.from(hclReport);
    const at = Buffer.from(changed).indexOf("vmUniqueId") + 20;
    changed[at] = changed[at] === 0x41 ? 0x42 : 0x41;
    expect(parseHCLReport(changed).claims).not.toEqual(parseHCLReport(hclReport).claims);
    const v = await createTPMValidator(policy(), { now }).validate(encodeDocument(parts({ hcl: { hclReport: changed, vcek, certChain: [ask, ark] } })), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/report_data is not SHA-256 of the HCL runtime claims/);
  });

  it("a quote by another AK, carrying the real HCL report, is refused (HCLAkPub is another key)", async () => {
    const ak = makeAK("rsa-rsassa");
    const q = marshalQuote({ extraData: Buffer.from("challenge"), selection: [{ hashAlg: ALG.SHA256, pcrs: [...Array(24).keys()] }], pcrDigest: read(azureDir, "tpm_quote_attest.bin").slice(-32) });
    const v = await createTPMValidator(policy(), { now }).validate(encodeDocument(parts({ akPublic: ak.tpm2bPublic, quote: q, signature: signQuote(ak, q) })), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/HCLAkPub is another key/);
  });

  it("the SNP report is held to the snp policy: another measurement is refused, a missing snp section too", async () => {
    const wrong = parsePolicy({ tpm: { pcrs: { "0": hex(pcrs.get(0)!) } }, snp: { measurement: "00".repeat(48) } });
    const v = await createTPMValidator(wrong, { now }).validate(encodeDocument(parts()), {});
    expect(failedOf(v)).toEqual(["ak anchoring"]);
    expect(v.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/SNP report: measurement/);
    const tpmOnly = parsePolicy({ tpm: { pcrs: { "0": hex(pcrs.get(0)!) } } });
    const w = await createTPMValidator(tpmOnly, { now }).validate(encodeDocument(parts()), {});
    expect(w.checks.find((c) => c.name === "ak anchoring")?.detail).toMatch(/needs the policy's snp section/);
  });

  it("a document carrying both akCertChain and hclReport is malformed", async () => {
    const doc = JSON.parse(Buffer.from(encodeDocument(parts())).toString());
    doc.akCertChain = [Buffer.from(read(gceDir, "ak_cert.der")).toString("base64")];
    const v = await createTPMValidator(policy(), { now }).validate(Buffer.from(JSON.stringify(doc)), {});
    expect(failedOf(v)).toEqual(["format"]);
  });
});

