import { beforeAll, describe, expect, it } from "vitest";
import { DocumentError, MAX_DOCUMENT_BYTES, base64Field, encodeTPMDocument, parseTPMDocument } from "../../src/attestation/document.js";
import type { Binding } from "../../src/attestation/attestation.js";
import { readFileSync } from "node:fs";
import { parsePolicy, type MeasurementPolicy } from "../../src/attestation/policy.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { Writer, encodeDocument, gceDir, loadGCEEvidence, type GCEEvidence } from "../helpers/tpm-builder.js";

let gce: GCEEvidence;
let base: Record<string, unknown>;
let policy: MeasurementPolicy;
const akCert = new Uint8Array(readFileSync(new URL("ak_cert.der", gceDir)));
beforeAll(async () => {
  gce = await loadGCEEvidence();
  base = JSON.parse(Buffer.from(encodeDocument({ akPublic: gce.akPublic, quote: gce.quote, signature: gce.signature, pcrs: gce.pcrs, userData: new Uint8Array(4), akCertChain: [akCert] })).toString());
  policy = parsePolicy({ tpm: { pcrs: { "0": Buffer.from(gce.pcrs.get(0)!).toString("hex") } } });
});
const defaultPolicy = (): MeasurementPolicy => policy;

type Obj = Record<string, any>;
const clone = (): Obj => structuredClone(base);
const json = (o: unknown): Uint8Array => Buffer.from(JSON.stringify(o));
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

describe("tpm document format", () => {
  it("accepts the well-formed document (baseline for the cases below)", async () => {
    const v = await createTPMValidator(defaultPolicy()).validate(json(clone()), {});
    expect(v.ok).toBe(true);
  });

  const cases: { name: string; doc: () => Uint8Array; field: RegExp }[] = [
    { name: "not UTF-8", doc: () => Uint8Array.of(0x7b, 0xff, 0x7d), field: /not UTF-8/ },
    { name: "not JSON", doc: () => Buffer.from("{akPublic: 1}"), field: /not JSON/ },
    { name: "a JSON array", doc: () => json([clone()]), field: /JSON object/ },
    { name: "null", doc: () => Buffer.from("null"), field: /JSON object/ },
    { name: "larger than 64 KiB", doc: () => Buffer.from(JSON.stringify(clone()) + " ".repeat(MAX_DOCUMENT_BYTES)), field: /more than 65536/ },
    ...["akPublic", "quote", "signature", "pcrs", "userData"].map((f) => ({
      name: `missing ${f}`,
      doc: () => {
        const o = clone();
        delete o[f];
        return json(o);
      },
      field: new RegExp(`^${f}: missing`),
    })),
    { name: "unknown field", doc: () => json({ ...clone(), nonce: "AAAA" }), field: /^nonce: unknown field/ },
    { name: "akCertChain empty", doc: () => json({ ...clone(), akCertChain: [] }), field: /^akCertChain: has 0 items, want 1..4/ },
    { name: "akCertChain of 5 certificates", doc: () => json({ ...clone(), akCertChain: Array(5).fill(b64(akCert)) }), field: /^akCertChain: has 5 items/ },
    { name: "akCertChain as a string", doc: () => json({ ...clone(), akCertChain: b64(akCert) }), field: /^akCertChain: must be an array/ },
    { name: "akCertChain and hclReport together", doc: () => json({ ...clone(), hclReport: "AAAA", vcek: "AAAA", certChain: ["AAAA", "AAAA"] }), field: /either akCertChain or hclReport/ },
    { name: "hclReport without vcek", doc: () => { const o = clone(); delete o.akCertChain; return json({ ...o, hclReport: "AAAA", certChain: ["AAAA", "AAAA"] }); }, field: /^vcek: missing/ },
    { name: "akPublic as a number", doc: () => json({ ...clone(), akPublic: 5 }), field: /^akPublic: must be a base64 string/ },
    { name: "quote in URL-safe base64", doc: () => json({ ...clone(), quote: b64(gce.quote).replace(/\+/g, "-").replace(/\//g, "_") }), field: /^quote: not canonical/ },
    { name: "signature with embedded newline", doc: () => json({ ...clone(), signature: b64(gce.signature).replace(/^(.{64})/, "$1\n") }), field: /^signature: not canonical/ },
    { name: "userData without padding", doc: () => json({ ...clone(), userData: "AAAAAA" }), field: /^userData: not canonical/ },
    { name: "userData with non-zero unused bits", doc: () => json({ ...clone(), userData: "AAB=" }), field: /^userData: not canonical/ },
    { name: "userData over 1 KiB", doc: () => json({ ...clone(), userData: b64(new Uint8Array(1025)) }), field: /^userData: is 1025 bytes/ },
    { name: "pcrs as an array", doc: () => json({ ...clone(), pcrs: [] }), field: /^pcrs: must be a JSON object/ },
    { name: "pcrs with a sha1 bank", doc: () => json({ ...clone(), pcrs: { ...clone().pcrs, sha1: {} } }), field: /^pcrs\.sha1: unknown field/ },
    { name: "pcrs without the sha256 bank", doc: () => json({ ...clone(), pcrs: {} }), field: /^pcrs\.sha256: missing/ },
    ...["07", "24", "-1", "1.0", " 1", "x"].map((k) => ({
      name: `PCR index ${JSON.stringify(k)}`,
      doc: () => json({ ...clone(), pcrs: { sha256: { ...clone().pcrs.sha256, [k]: "00".repeat(32) } } }),
      field: /PCR index must be 0-23/,
    })),
    { name: "PCR value of 31 bytes", doc: () => json({ ...clone(), pcrs: { sha256: { ...clone().pcrs.sha256, "3": "00".repeat(31) } } }), field: /^pcrs\.sha256\.3: must be 64 hex/ },
    { name: "PCR value not hex", doc: () => json({ ...clone(), pcrs: { sha256: { ...clone().pcrs.sha256, "3": "zz".repeat(32) } } }), field: /^pcrs\.sha256\.3: must be 64 hex/ },
    { name: "PCR value as a number", doc: () => json({ ...clone(), pcrs: { sha256: { ...clone().pcrs.sha256, "3": 0 } } }), field: /^pcrs\.sha256\.3: must be 64 hex/ },
    { name: "duplicate top-level key", doc: () => Buffer.from(JSON.stringify(clone()).replace(/^\{/, `{"userData":"AAAA",`)), field: /^userData: duplicate key/ },
    { name: "duplicate PCR index spelled with an escape", doc: () => Buffer.from(JSON.stringify(clone()).replace('"sha256":{', `"sha256":{"\\u0030":"${"00".repeat(32)}",`)), field: /^0: duplicate key/ },
    { name: "quote with a trailing byte", doc: () => json({ ...clone(), quote: b64(Uint8Array.from([...gce.quote, 0])) }), field: /^quote: TPMS_ATTEST at offset 115: 1 trailing bytes/ },
    { name: "AK as bare TPMT_PUBLIC", doc: () => json({ ...clone(), akPublic: b64(gce.akTPMTPublic) }), field: /^akPublic: TPM2B_PUBLIC\.size at offset 0/ },
    { name: "AK TPM2B cut short", doc: () => json({ ...clone(), akPublic: b64(new Writer().u16(gce.akTPMTPublic.length).bytes(gce.akTPMTPublic.subarray(0, 100)).done()) }), field: /^akPublic: TPM2B_PUBLIC\.size/ },
    { name: "HMAC signature", doc: () => json({ ...clone(), signature: b64(new Writer().u16(0x0005).u16(0x000b).bytes(new Uint8Array(32)).done()) }), field: /^signature: TPMT_SIGNATURE\.sigAlg at offset 0/ },
  ];
  for (const tc of cases) {
    it(`fails format for ${tc.name}, naming the problem`, async () => {
      const v = await createTPMValidator(defaultPolicy()).validate(tc.doc(), { nonce: new Uint8Array(32), userData: new Uint8Array(4), requireFresh: true });
      expect(v.ok).toBe(false);
      expect(v.checks[0]).toMatchObject({ name: "format", status: "failed" });
      expect(v.checks[0].detail).toMatch(tc.field);
      expect(v.checks.slice(1).every((c) => c.status === "skipped")).toBe(true);
    });
  }

  it("accepts upper-case PCR hex and lists PCRs in ascending order whatever the JSON order", () => {
    const o = clone();
    const entries = Object.entries(o.pcrs.sha256 as Record<string, string>).reverse();
    o.pcrs.sha256 = Object.fromEntries(entries.map(([k, v]) => [k, v.toUpperCase()]));
    const doc = parseTPMDocument(json(o));
    expect([...doc.pcrs.keys()]).toEqual([...Array(24).keys()]);
    expect(doc.pcrs.get(0)).toEqual(gce.pcrs.get(0));
  });

  it("round-trips through encodeTPMDocument", () => {
    const doc = parseTPMDocument(json(clone()));
    expect(parseTPMDocument(encodeTPMDocument(doc))).toEqual(doc);
  });

  it("names the field in DocumentError", () => {
    expect(() => base64Field("A", "x.y", 0, 10)).toThrow(DocumentError);
    try {
      base64Field("AAAA", "x.y", 4, 10);
    } catch (err) {
      expect(err).toMatchObject({ field: "x.y" });
    }
  });

  it("never throws for arbitrary input types", async () => {
    const val = createTPMValidator(defaultPolicy());
    for (const input of [undefined, null, "string", 5, {}, [], new Uint16Array(4)] as unknown[]) {
      const v = await val.validate(input as Uint8Array, {});
      expect(v.ok).toBe(false);
    }
    const v = await val.validate(json(clone()), undefined as unknown as Binding);
    expect(v.ok).toBe(true);
  });
});
