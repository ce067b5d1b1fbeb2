import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AMD_SNP_ROOTS } from "../../src/attestation/snp-roots.js";

const EVIDENCE = new URL("../../../shared/evidence/snp/amd-roots/", import.meta.url);
const der = (pem: string): Buffer => Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, ""), "base64");
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

describe("AMD_SNP_ROOTS pins", () => {
  for (const root of AMD_SNP_ROOTS) {
    it(`${root.product}: pin is the SHA-256 of the embedded ARK, equal to AMD's published file`, () => {
      expect(sha256(der(root.arkPem))).toBe(root.arkSha256);
      const dir = root.product.toLowerCase();
      expect(der(root.arkPem).equals(der(readFileSync(new URL(`${dir}/ark.pem`, EVIDENCE), "utf8")))).toBe(true);
      expect(der(root.askPem).equals(der(readFileSync(new URL(`${dir}/ask.pem`, EVIDENCE), "utf8")))).toBe(true);
      const ark = new X509Certificate(root.arkPem);
      expect(ark.subject).toContain(`CN=ARK-${root.product}`);
      expect(new X509Certificate(root.askPem).verify(ark.publicKey)).toBe(true);
    });
  }
  it("ARK-Milan and ARK-Genoa fingerprints start as the evidence README says", () => {
    const pin = (p: string): string | undefined => AMD_SNP_ROOTS.find((r) => r.product === p)?.arkSha256;
    expect(pin("Milan")?.startsWith("69d063b4")).toBe(true);
    expect(pin("Genoa")?.startsWith("4c6598d1")).toBe(true);
  });
});
