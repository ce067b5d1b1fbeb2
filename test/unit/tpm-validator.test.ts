import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { platformOIDs, type Binding, type Verdict } from "../../src/attestation/attestation.js";
import { readFileSync } from "node:fs";
import { parsePolicy, type MeasurementPolicy } from "../../src/attestation/policy.js";
import { parseTPM2BPublic, parseTPMTPublic, TPMParseError } from "../../src/attestation/tpm-structures.js";
import { checkAK, createTPMValidator, pcrDigest, tpmCheckNames, verifyQuote } from "../../src/attestation/tpm-validator.js";
import {
  ALG,
  ATTR,
  akAttributes,
  buildEvidence,
  digestOf,
  encodeDocument,
  loadGCEEvidence,
  gceDir,
  makeAK,
  pcrValues,
  testAKCertChain,
  type AKKind,
  type DocumentParts,
  type GCEEvidence,
  type TestAK,
} from "../helpers/tpm-builder.js";

function failed(v: Verdict): string[] {
  return v.checks.filter((c) => c.status === "failed").map((c) => c.name);
}

function status(v: Verdict, name: string): string | undefined {
  return v.checks.find((c) => c.name === name)?.status;
}

function flip(b: Uint8Array, i: number): Uint8Array {
  const c = Uint8Array.from(b);
  c[i < 0 ? c.length + i : i] ^= 0x01;
  return c;
}

let gce: GCEEvidence;
beforeAll(async () => {
  gce = await loadGCEEvidence();
});

describe("real GCE evidence", () => {
  it("verifies with the lower-level helpers: signature, restricted AK, extraData 9009, PCR digest", () => {
    const ak = parseTPMTPublic(gce.akTPMTPublic);
    expect(checkAK(ak).ok).toBe(true);
    const v = verifyQuote(ak, gce.quote, gce.signature);
    expect(v).toMatchObject({ ok: true });
    expect(Buffer.from(v.attest.extraData).toString("hex")).toBe("9009");
    expect(pcrDigest(gce.pcrs.values())).toEqual(v.attest.quote!.pcrDigest);
    expect(verifyQuote(ak, gce.quote, flip(gce.signature, -1)).ok).toBe(false);
    expect(verifyQuote(ak, flip(gce.quote, 0x30), gce.signature).ok).toBe(false);
    expect(() => verifyQuote(ak, gce.quote, gce.signature.subarray(0, 100))).toThrow(TPMParseError);
  });

  const akCert = new Uint8Array(readFileSync(new URL("ak_cert.der", gceDir)));
  const gceDoc = (over: Partial<DocumentParts> = {}): Uint8Array =>
    encodeDocument({ akPublic: gce.akPublic, quote: gce.quote, signature: gce.signature, pcrs: gce.pcrs, userData: new Uint8Array(), akCertChain: [akCert], ...over });
  const pinned = (): MeasurementPolicy =>
    parsePolicy({ tpm: { pcrs: Object.fromEntries(pcrValuesOf(gce.pcrs, [0, 4, 7])) } });
  const pcr0 = (): MeasurementPolicy => parsePolicy({ tpm: { pcrs: Object.fromEntries(pcrValuesOf(gce.pcrs, [0])) } });

  const cases: { name: string; doc: () => Uint8Array; binding?: Binding; policy?: () => MeasurementPolicy; failed: string[] }[] = [
    { name: "as captured (no nonce: binding skipped)", doc: () => gceDoc(), failed: [] },
    { name: "as captured but without its AK certificate", doc: () => gceDoc({ akCertChain: undefined }), failed: ["ak anchoring"] },
    { name: "as captured, PCRs 0/4/7 pinned by policy, fresh marker required", doc: () => gceDoc(), policy: pinned, binding: { requireFresh: true }, failed: [] },
    { name: "flipped signature byte", doc: () => gceDoc({ signature: flip(gce.signature, -1) }), failed: ["signature"] },
    { name: "flipped quote byte (clock)", doc: () => gceDoc({ quote: flip(gce.quote, 0x30) }), failed: ["signature"] },
    { name: "changed PCR 9 value", doc: () => gceDoc({ pcrs: new Map([...gce.pcrs].map(([i, v]) => [i, i === 9 ? flip(v, 0) : v])) }), failed: ["pcr digest"] },
    { name: "PCR 23 left out of the listing", doc: () => gceDoc({ pcrs: new Map([...gce.pcrs].filter(([i]) => i !== 23)) }), failed: ["pcr selection", "pcr digest"] },
    { name: "nonce of this handshake (quote says 9009)", doc: () => gceDoc(), binding: { nonce: randomBytes(32) }, failed: ["nonce binding"] },
    { name: "userData of another certificate", doc: () => gceDoc(), binding: { userData: randomBytes(32) }, failed: ["userData binding"] },
    { name: "policy wants another PCR 7", doc: () => gceDoc(), policy: () => parsePolicy({ tpm: { pcrs: { "7": "00".repeat(32) } } }), failed: ["policy pcrs"] },
    { name: "AK as bare TPMT_PUBLIC (DESIGN.md wants TPM2B_PUBLIC)", doc: () => gceDoc({ akPublic: gce.akTPMTPublic }), failed: ["format"] },
    { name: "AK from another key", doc: () => gceDoc({ akPublic: makeAK("rsa-rsassa", { keySlot: 1 }).tpm2bPublic }), failed: ["ak anchoring", "signature"] },
  ];
  for (const tc of cases) {
    it(`${tc.failed.length === 0 ? "accepts" : "rejects"} ${tc.name}${tc.failed.length ? ` (${tc.failed.join(", ")})` : ""}`, async () => {
      const v = await createTPMValidator(tc.policy?.() ?? pcr0()).validate(tc.doc(), tc.binding ?? {});
      expect(failed(v)).toEqual(tc.failed);
      expect(v.ok).toBe(tc.failed.length === 0);
    });
  }

  it("reports every check by name, in order, and the PCRs as facts", async () => {
    const v = await createTPMValidator(pcr0()).validate(gceDoc(), {});
    expect(v.platform).toBe("tpm");
    expect(v.checks.map((c) => c.name)).toEqual([...tpmCheckNames]);
    expect(v.checks.find((c) => c.name === "policy pcrs")).toEqual({ name: "policy pcrs", status: "passed", detail: "PCRs 0 match" });
    expect(status(v, "nonce binding")).toBe("skipped");
    expect(status(v, "fresh marker")).toBe("skipped");
    expect(v.facts.pcr0).toBe("0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf");
    expect(v.facts.extraData).toBe("9009");
  });
});

function pcrValuesOf(pcrs: Map<number, Uint8Array>, indices: number[]): [string, string][] {
  return indices.map((i) => [String(i), Buffer.from(pcrs.get(i)!).toString("hex")]);
}

/** pcr0Policy pins PCR 0 of pcrValues() and allows the test CA that anchored() certifies with. */
function pcr0Policy(): MeasurementPolicy {
  return { tpm: { pcrs: new Map([[0, Buffer.from(pcrValues([0]).get(0)!).toString("hex")]]), allowTestRoot: true } };
}

/** anchored adds a test-CA certificate for the document's AK (as a provisioned swtpm would), when its AK parses. */
function anchored(parts: DocumentParts): DocumentParts {
  if (parts.akCertChain) return parts;
  try {
    return { ...parts, akCertChain: testAKCertChain(parseTPM2BPublic(parts.akPublic).key) };
  } catch {
    return parts;
  }
}

describe("software-made evidence", () => {
  const kinds: AKKind[] = ["rsa-rsassa", "rsa-rsapss", "ecc-p256", "ecc-p384"];
  const aks = new Map<AKKind, TestAK>();
  beforeAll(() => {
    for (const k of kinds) aks.set(k, makeAK(k));
  });
  const nonce = Buffer.alloc(32, 0x11);
  const userData = Buffer.alloc(32, 0x22);
  const binding: Binding = { nonce, userData, requireFresh: true };

  interface Case {
    name: string;
    parts: (ak: TestAK) => DocumentParts;
    binding?: Binding;
    policy?: () => MeasurementPolicy;
    failed: string[];
  }
  const good = (ak: TestAK) => buildEvidence({ ak, nonce, userData });
  const cases: Case[] = [
    { name: "valid evidence bound to this handshake", parts: good, failed: [] },
    {
      name: "non-restricted AK signing its own TPMS_ATTEST",
      parts: (ak) => {
        const free = makeAK(ak.kind, { attributes: akAttributes & ~ATTR.restricted });
        return buildEvidence({ ak: free, nonce, userData });
      },
      failed: ["ak restricted signing key"],
    },
    { name: "duplicable AK (fixedTPM clear)", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { attributes: akAttributes & ~ATTR.fixedTPM }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "imported AK (sensitiveDataOrigin clear)", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { attributes: akAttributes & ~ATTR.sensitiveDataOrigin }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "AK with a reserved attribute bit", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { attributes: akAttributes | 1 }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "AK with noDA and stClear (allowed)", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { attributes: akAttributes | (1 << 10) | (1 << 2) }), nonce, userData }), failed: [] },
    { name: "AK that can also decrypt", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { attributes: akAttributes | ATTR.decrypt }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "AK with a symmetric algorithm", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { symmetric: true }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "AK without a signing scheme", parts: (ak) => buildEvidence({ ak: makeAK(ak.kind, { scheme: ALG.NULL }), nonce, userData }), failed: ["ak restricted signing key"] },
    { name: "flipped signature byte", parts: (ak) => ({ ...good(ak), signature: flip(good(ak).signature, -1) }), failed: ["signature"] },
    { name: "signature by another key", parts: (ak) => buildEvidence({ ak, nonce, userData, sign: { key: makeAK(ak.kind, { keySlot: 1 }).privateKey } }), failed: ["signature"] },
    { name: "qualifiedSigner naming another nameAlg than the AK's", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { qualifiedSigner: Uint8Array.from([0x00, 0x04, ...new Uint8Array(20)]) } }), failed: ["signature"] },
    { name: "SHA-1 signature", parts: (ak) => buildEvidence({ ak, nonce, userData, sign: { hashAlg: ALG.SHA1 } }), failed: ["signature"] },
    { name: "TPMS_ATTEST without TPM_GENERATED magic", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { magic: 0xff544348 } }), failed: ["attest type"] },
    { name: "TPMS_ATTEST of type certify", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { type: 0x8017 } }), failed: ["attest type"] },
    { name: "document replayed from another handshake", parts: (ak) => buildEvidence({ ak, nonce: Buffer.alloc(32, 0x99), userData }), failed: ["nonce binding"] },
    {
      name: "document for another certificate key",
      parts: (ak) => buildEvidence({ ak, nonce, userData: Buffer.alloc(32, 0x33) }),
      failed: ["userData binding"],
    },
    { name: "quote selects the SHA-1 bank", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { selection: [{ hashAlg: ALG.SHA1, pcrs: [...Array(24).keys()] }] } }), failed: ["pcr selection"] },
    { name: "quote selects fewer PCRs than listed", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { selection: [{ hashAlg: ALG.SHA256, pcrs: [0, 1, 2] }] } }), failed: ["pcr selection"] },
    {
      name: "listed PCR changed after quoting",
      parts: (ak) => {
        const p = good(ak);
        p.pcrs.set(4, digestOf([Buffer.from("evil")]));
        return p;
      },
      failed: ["pcr digest"],
    },
    { name: "quote's pcrDigest wrong", parts: (ak) => buildEvidence({ ak, nonce, userData, quote: { pcrDigest: new Uint8Array(ak.hashAlg === ALG.SHA384 ? 48 : 32) } }), failed: ["pcr digest"] },
    { name: "PCR 4 not what the policy pins", parts: good, policy: () => parsePolicy({ tpm: { pcrs: { "4": "ab".repeat(32) }, allowTestRoot: true } }), failed: ["policy pcrs"] },
    { name: "policy PCR not quoted", parts: (ak) => buildEvidence({ ak, nonce, userData, pcrs: pcrValues([0, 11, 12]) }), policy: () => parsePolicy({ tpm: { pcrs: { "7": "ab".repeat(32) }, allowTestRoot: true } }), failed: ["policy pcrs"] },
    { name: "policy PCRs satisfied", parts: good, policy: () => parsePolicy({ tpm: { pcrs: Object.fromEntries(pcrValuesOf(pcrValues([...Array(24).keys()]), [0, 7, 10])), allowTestRoot: true } }), failed: [] },
    { name: "policy pinning no PCR (nothing is skipped-means-fine)", parts: good, policy: () => ({ tpm: { pcrs: new Map(), allowTestRoot: true } }), failed: ["policy pcrs"] },
    { name: "policy pinning PCR 11 (an activation marker)", parts: good, policy: () => ({ tpm: { pcrs: new Map([[11, "00".repeat(32)]]), allowTestRoot: true } }), failed: ["policy pcrs"] },
    { name: "policy naming only snp (the test root is not allowed either)", parts: good, policy: () => parsePolicy({ snp: { measurement: "00".repeat(48) } }), failed: ["ak anchoring", "policy pcrs"] },
    {
      name: "already activated peer (PCR 11 extended)",
      parts: (ak) => {
        const pcrs = pcrValues([...Array(24).keys()]);
        pcrs.set(11, digestOf([new Uint8Array(32), Buffer.alloc(32, 1)]));
        return buildEvidence({ ak, nonce, userData, pcrs });
      },
      failed: ["fresh marker"],
    },
    { name: "PCR 12 not quoted while freshness is required", parts: (ak) => buildEvidence({ ak, nonce, userData, pcrs: pcrValues([0, 11]) }), failed: ["fresh marker"] },
    {
      name: "already activated peer when freshness is not required",
      parts: (ak) => buildEvidence({ ak, nonce, userData, pcrs: new Map([[0, pcrValues([0]).get(0)!], [11, Buffer.alloc(32, 1)]]) }),
      binding: { nonce, userData },
      failed: [],
    },
  ];

  for (const kind of kinds) {
    describe(kind, () => {
      for (const tc of cases) {
        it(`${tc.failed.length === 0 ? "accepts" : "rejects"} ${tc.name}${tc.failed.length ? ` (${tc.failed.join(", ")})` : ""}`, async () => {
          const ak = aks.get(kind)!;
          const v = await createTPMValidator(tc.policy?.() ?? pcr0Policy()).validate(encodeDocument(anchored(tc.parts(ak))), tc.binding ?? binding);
          expect(failed(v), JSON.stringify(v.checks)).toEqual(tc.failed);
          expect(v.ok).toBe(tc.failed.length === 0);
        });
      }
    });
  }

  it("certify-type TPMS_ATTEST skips the PCR checks instead of guessing", async () => {
    const ak = aks.get("rsa-rsassa")!;
    const v = await createTPMValidator(pcr0Policy()).validate(encodeDocument(anchored(buildEvidence({ ak, nonce, userData, quote: { type: 0x8017 } }))), binding);
    expect(v.ok).toBe(false);
    // The opaque body is not parsed as TPMS_QUOTE_INFO: its selection and digest are not evaluated.
    expect(status(v, "pcr selection")).toBe("skipped");
    expect(status(v, "pcr digest")).toBe("skipped");
  });

  it("exposes platform tpm and its OID", () => {
    const val = createTPMValidator(pcr0Policy());
    expect(val.platform).toBe("tpm");
    expect(val.oid).toBe(platformOIDs.tpm);
  });
});
