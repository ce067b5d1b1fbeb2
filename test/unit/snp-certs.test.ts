import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CertError, checkPSSAlgorithm, parseCertificate, readVcekExtensions, sha256Hex, verifySNPChain, type PinnedRoot,
} from "../../src/attestation/snp-certs.js";
import { AMD_SNP_ROOTS } from "../../src/attestation/snp-roots.js";
import { generateSimulatedSNPChain } from "../../src/attestation/snp-simulated.js";

const EVIDENCE = new URL("../../../shared/evidence/snp/", import.meta.url);
const file = (p: string): Uint8Array => new Uint8Array(readFileSync(new URL(p, EVIDENCE)));
const pems = (p: string): Uint8Array[] =>
  [...readFileSync(new URL(p, EVIDENCE), "utf8").matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map(
    (m) => new Uint8Array(Buffer.from(m[1].replace(/\s/g, ""), "base64")),
  );
const roots: PinnedRoot[] = AMD_SNP_ROOTS.map((r) => ({ product: r.product, arkSha256: r.arkSha256 }));
const hex = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString("hex") : undefined);
const NOW = new Date("2025-06-01T00:00:00Z");
const [milanAsk, milanArk] = pems("amd-roots/milan/ask.pem").concat(pems("amd-roots/milan/ark.pem")) as [Uint8Array, Uint8Array];
const [genoaAsk, genoaArk] = pems("amd-roots/genoa/ask.pem").concat(pems("amd-roots/genoa/ark.pem")) as [Uint8Array, Uint8Array];
const [turinAsk, turinArk] = pems("amd-roots/turin/ask.pem").concat(pems("amd-roots/turin/ark.pem")) as [Uint8Array, Uint8Array];

describe("VCEK extensions of real VCEKs (serial 0)", () => {
  for (const folder of ["milan-v2-virtee", "milan-v2-debug"]) {
    it(folder, () => {
      const want = (JSON.parse(readFileSync(new URL(`${folder}/expected.json`, EVIDENCE), "utf8")) as { signer_cert: Record<string, unknown> }).signer_cert;
      const cert = parseCertificate(file(`${folder}/vcek.der`), "VCEK");
      const ext = readVcekExtensions(cert);
      expect(ext.productName).toBe(want.productName);
      expect(ext.tcb).toEqual({ bootloader: want.blSPL, tee: want.teeSPL, snp: want.snpSPL, microcode: want.ucodeSPL });
      expect(hex(ext.hwId)).toBe(want.hwID);
      expect(cert.notBefore.toISOString().replace("T", " ").replace(".000Z", "+00:00")).toBe(want.not_before);
      expect(cert.notAfter.toISOString().replace("T", " ").replace(".000Z", "+00:00")).toBe(want.not_after);
    });
  }
  it("newer hwID form (an OCTET STRING inside extnValue) is unwrapped; ucodeSPL with a leading zero byte decodes", () => {
    expect(hex(readVcekExtensions(parseCertificate(file("invalid-vceks/test-vcek-invalid-new.der"))).hwId)).toBe(
      Buffer.from(Array.from({ length: 64 }, (_, i) => i)).toString("hex"),
    );
    expect(readVcekExtensions(parseCertificate(file("invalid-vceks/test-vcek-invalid-legacy.der"))).tcb?.microcode).toBe(169);
  });
  it("Turin VCEK: 8-byte hwID and fmcSPL", () => {
    const ext = readVcekExtensions(parseCertificate(file("amd-roots/turin/vcek_turin_from_virtee_tests.der")));
    expect(ext.productName).toBe("Turin");
    expect(hex(ext.hwId)).toBe("1e550a8ee5cf9f4d");
    expect(ext.tcb).toEqual({ fmc: 0, bootloader: 0, tee: 0, snp: 0, microcode: 9 });
  });
});

describe("verifySNPChain", () => {
  const virtee = file("milan-v2-virtee/vcek.der");
  const cases: { name: string; vcek: () => Uint8Array; ask: Uint8Array; ark: Uint8Array; now?: Date; ok: boolean; detail: RegExp; roots?: PinnedRoot[] }[] = [
    { name: "milan-v2-virtee to ARK-Milan", vcek: () => virtee, ask: milanAsk, ark: milanArk, ok: true, detail: /ARK Milan \(pinned\)/ },
    { name: "milan-v2-debug to ARK-Milan", vcek: () => file("milan-v2-debug/vcek.der"), ask: milanAsk, ark: milanArk, ok: true, detail: /Milan/ },
    { name: "Turin VCEK to ARK-Turin", vcek: () => file("amd-roots/turin/vcek_turin_from_virtee_tests.der"), ask: turinAsk, ark: turinArk, ok: true, detail: /ARK Turin/ },
    { name: "invalid VCEK (legacy)", vcek: () => file("invalid-vceks/test-vcek-invalid-legacy.der"), ask: milanAsk, ark: milanArk, ok: false, detail: /VCEK is not signed by the ASK/ },
    { name: "invalid VCEK (new)", vcek: () => file("invalid-vceks/test-vcek-invalid-new.der"), ask: milanAsk, ark: milanArk, ok: false, detail: /VCEK is not signed by the ASK/ },
    { name: "Milan VCEK under the Genoa chain", vcek: () => virtee, ask: genoaAsk, ark: genoaArk, ok: false, detail: /VCEK is not signed by the ASK/ },
    { name: "Genoa ASK under ARK-Milan", vcek: () => virtee, ask: genoaAsk, ark: milanArk, ok: false, detail: /ASK is not signed by the ARK/ },
    { name: "ARK and ASK swapped", vcek: () => virtee, ask: milanArk, ark: milanAsk, ok: false, detail: /not a pinned root/ },
    { name: "no pins at all", vcek: () => virtee, ask: milanAsk, ark: milanArk, roots: [], ok: false, detail: /not a pinned root/ },
    { name: "VCEK expired (2031)", vcek: () => virtee, ask: milanAsk, ark: milanArk, now: new Date("2031-01-01T00:00:00Z"), ok: false, detail: /VCEK not valid at 2031/ },
    { name: "VCEK not yet valid (2022)", vcek: () => virtee, ask: milanAsk, ark: milanArk, now: new Date("2022-01-01T00:00:00Z"), ok: false, detail: /VCEK not valid/ },
    { name: "truncated VCEK", vcek: () => virtee.subarray(0, 700), ask: milanAsk, ark: milanArk, ok: false, detail: /^VCEK: / },
    { name: "VCEK with a trailing byte", vcek: () => Uint8Array.from([...virtee, 0]), ask: milanAsk, ark: milanArk, ok: false, detail: /^VCEK: not a single DER SEQUENCE/ },
    { name: "empty ARK", vcek: () => virtee, ask: milanAsk, ark: new Uint8Array(0), ok: false, detail: /^ARK: DER: truncated/ },
    {
      name: "VCEK notBefore in month 13 (no roll-over into the next year)",
      vcek: () => { const b = new Uint8Array(virtee); b.set(Buffer.from("13"), 219); return b; },
      ask: milanAsk, ark: milanArk, ok: false, detail: /^VCEK: notBefore: bad time/,
    },
    {
      name: "outer signature algorithm salt changed",
      vcek: () => { const b = new Uint8Array(virtee); b[837] = 0x20; return b; },
      ask: milanAsk, ark: milanArk, ok: false, detail: /inside and outside tbsCertificate differ/,
    },
    {
      name: "both signature algorithms claim salt 32",
      vcek: () => { const b = new Uint8Array(virtee); b[82] = 0x20; b[837] = 0x20; return b; },
      ask: milanAsk, ark: milanArk, ok: false, detail: /PSS salt length is not 48/,
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const r = verifySNPChain({ vcek: tc.vcek(), ask: tc.ask, ark: tc.ark }, tc.roots ?? roots, tc.now ?? NOW);
      expect(r.ok, r.detail).toBe(tc.ok);
      expect(r.detail).toMatch(tc.detail);
    });
  }
  it("a simulated chain verifies only once its ARK is pinned", async () => {
    const sim = await generateSimulatedSNPChain(1024);
    const vcek = sim.ask.der; // any certificate signed by the ARK stands in for the leaf's first link
    expect(verifySNPChain({ vcek, ask: sim.ask.der, ark: sim.ark.der }, roots, new Date()).detail).toMatch(/not a pinned root/);
    const pinned = [...roots, { product: "sim", arkSha256: sha256Hex(sim.ark.der) }];
    // The ASK's issuer is the ARK, not the ASK itself: the VCEK link fails, after the pin and the ASK passed.
    expect(verifySNPChain({ vcek, ask: sim.ask.der, ark: sim.ark.der }, pinned, new Date()).detail).toBe("VCEK is not signed by the ASK");
  });
});

describe("parseCertificate never throws anything but CertError", () => {
  const virtee = file("milan-v2-virtee/vcek.der");
  it("every truncation and every single-byte flip of a real VCEK", () => {
    let parsed = 0;
    for (let n = 0; n < virtee.length; n++) expect(() => parseCertificate(virtee.subarray(0, n))).toThrow(CertError);
    for (let i = 0; i < virtee.length; i++) {
      const b = new Uint8Array(virtee);
      b[i] ^= 0x41;
      try {
        readVcekExtensions(parseCertificate(b));
        parsed++;
      } catch (err) {
        expect(err).toBeInstanceOf(CertError);
      }
    }
    expect(parsed).toBeGreaterThan(0);
  });
  it("checkPSSAlgorithm accepts the real algorithm and refuses RSA PKCS#1 v1.5 SHA-384", () => {
    expect(() => checkPSSAlgorithm(parseCertificate(virtee).signatureAlgorithm)).not.toThrow();
    const pkcs1 = Buffer.from("300d06092a864886f70d01010c0500", "hex");
    expect(() => checkPSSAlgorithm(pkcs1)).toThrow(/not RSASSA-PSS/);
  });
});
