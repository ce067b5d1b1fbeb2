import { createPublicKey, verify, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { defaultPolicy } from "../../src/attestation/policy.js";
import { parseCertificate, readVcekExtensions } from "../../src/attestation/snp-certs.js";
import { parseSNPReport, reportSignatureP1363, signedBytes } from "../../src/attestation/snp-report.js";
import {
  exportSimulatedSNPChain, importSimulatedSNPChain, simulatedSNPChain, SimulatedSNPIssuer, SIMULATED_SNP_MEASUREMENT, SIMULATED_SNP_TCB,
} from "../../src/attestation/snp-simulated.js";
import { SIMULATED_SNP_MEASUREMENT as SIM_MEASUREMENT } from "../../src/attestation/snp-simulated.js";
import { createSNPValidator, parseSNPDocument, snpReportData } from "../../src/attestation/snp-validator.js";

const nonce = new Uint8Array(32).fill(7);
const userData = new Uint8Array(32).fill(9);
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("SimulatedSNPIssuer", () => {
  it("caches one chain per process", async () => {
    const [a, b] = await Promise.all([simulatedSNPChain(), simulatedSNPChain()]);
    expect(a).toBe(b);
    expect(hex(await new SimulatedSNPIssuer().testRoot())).toBe(hex(a.ark.der));
  });

  it("issues a version-3 report with the configured fields and report_data = SHA-512(nonce ‖ userData)", async () => {
    const hostData = new Uint8Array(32).fill(0x5a);
    const doc = parseSNPDocument(await new SimulatedSNPIssuer({ vmpl: 2, debug: true, hostData }).issue(nonce, userData));
    const r = parseSNPReport(doc.report);
    expect(r.version).toBe(3);
    expect(r.cpuidFamId).toBe(0x19);
    expect(hex(r.reportData)).toBe(hex(snpReportData(nonce, userData)));
    expect(hex(r.measurement)).toBe(SIMULATED_SNP_MEASUREMENT);
    expect(r.vmpl).toBe(2);
    expect(r.debug).toBe(true);
    expect(r.policy & 0x30000n).toBe(0x30000n);
    expect(hex(r.hostData)).toBe(hex(hostData));
    expect(r.reportedTcb).toEqual(SIMULATED_SNP_TCB);
    expect(r.signatureAlgo).toBe(1);
    expect(hex(doc.userData)).toBe(hex(userData));
  });

  it("makes certificates OpenSSL accepts: PSS chain, serial 0, P-384 VCEK with TCB and hwID", async () => {
    const doc = parseSNPDocument(await new SimulatedSNPIssuer({ tcb: { bootloader: 1, tee: 2, snp: 3, microcode: 4 } }).issue(nonce, userData));
    const [vcek, ask, ark] = [doc.vcek, ...doc.certChain].map((d) => new X509Certificate(d)) as [X509Certificate, X509Certificate, X509Certificate];
    expect(ark.verify(ark.publicKey)).toBe(true);
    expect(ask.verify(ark.publicKey)).toBe(true);
    expect(vcek.verify(ask.publicKey)).toBe(true);
    expect(vcek.serialNumber).toBe("0");
    expect(vcek.publicKey.asymmetricKeyDetails?.namedCurve).toBe("secp384r1");
    expect(ark.ca && ask.ca).toBe(true);
    const ext = readVcekExtensions(parseCertificate(doc.vcek));
    expect(ext.tcb).toEqual({ bootloader: 1, tee: 2, snp: 3, microcode: 4 });
    expect(hex(ext.hwId!)).toBe(hex(parseSNPReport(doc.report).chipId));
    // The report signature verifies with OpenSSL's view of the VCEK key too.
    const r = parseSNPReport(doc.report);
    const key = createPublicKey(vcek.publicKey.export({ type: "spki", format: "pem" }));
    expect(verify("sha384", signedBytes(r), { key, dsaEncoding: "ieee-p1363" }, reportSignatureP1363(r) as Uint8Array)).toBe(true);
  });

  it("an exported chain imported elsewhere signs documents the exported root validates", async () => {
    const chain = importSimulatedSNPChain(exportSimulatedSNPChain(await simulatedSNPChain()));
    const policy = defaultPolicy();
    policy.snp.allowTestRoot = true;
    policy.snp.measurement = SIM_MEASUREMENT;
    const validator = createSNPValidator(policy, { testRoots: [(await simulatedSNPChain()).ark.der] });
    const verdict = await validator.validate(await new SimulatedSNPIssuer({ chain }).issue(nonce, userData), { nonce, userData });
    expect(verdict.ok, JSON.stringify(verdict.checks)).toBe(true);
  });

  const bad: { name: string; make: () => unknown; error: RegExp }[] = [
    { name: "measurement of 47 bytes", make: () => new SimulatedSNPIssuer({ measurement: new Uint8Array(47) }), error: /48 bytes/ },
    { name: "measurement hex too short", make: () => new SimulatedSNPIssuer({ measurement: "abcd" }), error: /48 bytes/ },
    { name: "vmpl 4", make: () => new SimulatedSNPIssuer({ vmpl: 4 }), error: /vmpl/ },
    { name: "hostData of 31 bytes", make: () => new SimulatedSNPIssuer({ hostData: new Uint8Array(31) }), error: /hostData/ },
    { name: "import of a chain without keys", make: () => importSimulatedSNPChain(JSON.stringify({ ark: {}, ask: {}, chipId: "00".repeat(64) })), error: /ark must have/ },
    { name: "import of a chain with a short chipId", make: () => importSimulatedSNPChain(JSON.stringify({ chipId: "00" })), error: /chipId/ },
  ];
  for (const tc of bad) it(`refuses ${tc.name}`, () => expect(tc.make).toThrow(tc.error));
  it("refuses userData the validator would refuse", async () => {
    await expect(new SimulatedSNPIssuer().issue(nonce, new Uint8Array(1025))).rejects.toThrow(/userData is 1025 bytes/);
  });
});
