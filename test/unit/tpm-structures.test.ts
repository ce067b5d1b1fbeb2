import { createPublicKey, sign, verify, generateKeyPairSync } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import {
  TPMA_OBJECT,
  TPMParseError,
  TPM_ALG,
  Reader,
  objectName,
  parseTPM2BPublic,
  parseTPMSAttest,
  parseTPMTPublic,
  parseTPMTSignature,
} from "../../src/attestation/tpm-structures.js";
import { ecdsaToDER, ecdsaToP1363 } from "../../src/attestation/tpm-validator.js";
import { ALG, Writer, loadGCEEvidence, makeAK, marshalQuote, signQuote, type GCEEvidence } from "../helpers/tpm-builder.js";

let gce: GCEEvidence;
beforeAll(async () => {
  gce = await loadGCEEvidence();
});

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** expectParseError runs f and demands a TPMParseError (never another kind of exception). */
function expectParseError(f: () => unknown): TPMParseError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(TPMParseError);
    return err as TPMParseError;
  }
  throw new Error("expected a TPMParseError, parse succeeded");
}

describe("TPMT_PUBLIC of the real GCE AK", () => {
  it("parses as an RSA-2048 restricted signing key with RSASSA-SHA256 equal to ak_pub.pem", () => {
    const ak = parseTPMTPublic(gce.akTPMTPublic);
    expect(ak.type).toBe(TPM_ALG.RSA);
    expect(ak.nameAlg).toBe(TPM_ALG.SHA256);
    expect(ak.objectAttributes & TPMA_OBJECT.restricted).toBeTruthy();
    expect(ak.objectAttributes & TPMA_OBJECT.sign).toBeTruthy();
    expect(ak.objectAttributes & TPMA_OBJECT.decrypt).toBe(0);
    expect(ak.parameters).toMatchObject({ type: "rsa", keyBits: 2048, exponent: 65537, symmetric: TPM_ALG.NULL, scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 } });
    const pem = createPublicKey(gce.akPEM);
    expect(ak.key.export({ format: "der", type: "spki" })).toEqual(pem.export({ format: "der", type: "spki" }));
  });

  it("parses identically as TPM2B_PUBLIC once the size prefix is added, and its name is nameAlg ‖ SHA-256", () => {
    const a = parseTPMTPublic(gce.akTPMTPublic);
    const b = parseTPM2BPublic(gce.akPublic);
    expect(hex(b.encoded)).toBe(hex(a.encoded));
    expect(hex(objectName(a)).slice(0, 4)).toBe("000b");
    expect(objectName(a)).toHaveLength(34);
  });

  it("refuses the bare TPMT_PUBLIC where a TPM2B_PUBLIC is expected", () => {
    const e = expectParseError(() => parseTPM2BPublic(gce.akTPMTPublic));
    expect(e.structure).toBe("TPM2B_PUBLIC.size");
  });

  it("reports the structure and offset of every truncation", () => {
    for (let n = 0; n < gce.akTPMTPublic.length; n++) {
      const e = expectParseError(() => parseTPMTPublic(gce.akTPMTPublic.subarray(0, n)));
      expect(e.offset).toBeLessThanOrEqual(n);
      expect(e.message).toContain(e.structure);
    }
  });
});

describe("TPMS_ATTEST of the real GCE quote", () => {
  it("parses every field as quote1_sha256_expected.json lists it", () => {
    const a = parseTPMSAttest(gce.quote);
    const x = gce.expected.attest;
    expect(a.magic).toBe(0xff544347);
    expect(a.type).toBe(0x8018);
    expect(hex(a.qualifiedSigner)).toBe(x.qualifiedSigner);
    expect(hex(a.extraData)).toBe(x.extraData);
    expect(a.clockInfo).toEqual({ clock: BigInt(x.clock), resetCount: x.resetCount, restartCount: x.restartCount, safe: x.safe });
    expect(`0x${a.firmwareVersion.toString(16).padStart(16, "0")}`).toBe(x.firmwareVersion);
    expect(a.quote?.pcrSelect).toEqual([{ hashAlg: TPM_ALG.SHA256, pcrs: [...Array(24).keys()] }]);
    expect(hex(a.quote!.pcrDigest)).toBe(x.pcrDigest);
  });

  it("reports every truncation and trailing garbage as TPMParseError", () => {
    for (let n = 0; n < gce.quote.length; n++) expectParseError(() => parseTPMSAttest(gce.quote.subarray(0, n)));
    const e = expectParseError(() => parseTPMSAttest(Uint8Array.from([...gce.quote, 0])));
    expect(e).toMatchObject({ structure: "TPMS_ATTEST", offset: gce.quote.length });
  });

  it("leaves a non-quote body opaque and reports its type", () => {
    const q = Uint8Array.from(gce.quote);
    q[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
    const a = parseTPMSAttest(q);
    expect(a.type).toBe(0x8017);
    expect(a.quote).toBeUndefined();
  });
});

describe("TPMT_SIGNATURE", () => {
  it("parses the real GCE RSASSA-SHA256 signature", () => {
    const s = parseTPMTSignature(gce.signature);
    expect(s.sigAlg).toBe(TPM_ALG.RSASSA);
    expect(s.hashAlg).toBe(TPM_ALG.SHA256);
    expect(s.sigAlg !== TPM_ALG.ECDSA && s.sig.length).toBe(256);
  });

  const bad: { name: string; bytes: Uint8Array; structure: string }[] = [
    { name: "empty", bytes: new Uint8Array(), structure: "TPMT_SIGNATURE.sigAlg" },
    { name: "HMAC (unsupported)", bytes: new Writer().u16(0x0005).u16(ALG.SHA256).bytes(new Uint8Array(32)).done(), structure: "TPMT_SIGNATURE.sigAlg" },
    { name: "RSA size beyond the end", bytes: new Writer().u16(ALG.RSASSA).u16(ALG.SHA256).u16(256).bytes(new Uint8Array(10)).done(), structure: "TPMS_SIGNATURE_RSA.sig" },
    { name: "empty RSA signature", bytes: new Writer().u16(ALG.RSASSA).u16(ALG.SHA256).u16(0).done(), structure: "TPMS_SIGNATURE_RSA.sig" },
    { name: "ECDSA r too long", bytes: new Writer().u16(ALG.ECDSA).u16(ALG.SHA256).tpm2b(new Uint8Array(67)).tpm2b(new Uint8Array(32)).done(), structure: "TPMS_SIGNATURE_ECC.signatureR" },
    { name: "ECDSA s missing", bytes: new Writer().u16(ALG.ECDSA).u16(ALG.SHA256).tpm2b(new Uint8Array(32)).done(), structure: "TPMS_SIGNATURE_ECC.signatureS" },
    { name: "trailing byte", bytes: new Writer().u16(ALG.ECDSA).u16(ALG.SHA256).tpm2b(new Uint8Array(32)).tpm2b(new Uint8Array(32)).u8(0).done(), structure: "TPMT_SIGNATURE" },
  ];
  for (const tc of bad) {
    it(`refuses ${tc.name}`, () => {
      expect(expectParseError(() => parseTPMTSignature(tc.bytes)).structure).toBe(tc.structure);
    });
  }

  it("converts ECDSA r/s to the DER and P1363 forms Node verifies", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    for (let i = 0; i < 64; i++) {
      const msg = Buffer.from(`message ${i}`);
      const rs = sign("sha256", msg, { key: privateKey, dsaEncoding: "ieee-p1363" });
      // Strip leading zeros as some TPMs do: the converters must pad them back.
      const strip = (b: Uint8Array) => b.subarray(b.findIndex((x) => x !== 0));
      const r = strip(rs.subarray(0, 32));
      const s = strip(rs.subarray(32));
      expect(verify("sha256", msg, { key: publicKey, dsaEncoding: "der" }, ecdsaToDER(r, s))).toBe(true);
      expect(verify("sha256", msg, { key: publicKey, dsaEncoding: "ieee-p1363" }, ecdsaToP1363(r, s, 32)!)).toBe(true);
    }
    expect(ecdsaToP1363(new Uint8Array(33).fill(1), new Uint8Array(32), 32)).toBeUndefined();
  });
});

describe("public areas made in software", () => {
  const kinds = ["rsa-rsassa", "rsa-rsapss", "ecc-p256", "ecc-p384"] as const;
  for (const kind of kinds) {
    it(`${kind}: round-trips key and scheme, and a quote signed by it parses`, () => {
      const ak = makeAK(kind);
      const pub = parseTPM2BPublic(ak.tpm2bPublic);
      expect(pub.key.export({ format: "der", type: "spki" })).toEqual(ak.publicKey.export({ format: "der", type: "spki" }));
      expect(pub.parameters.scheme).toEqual({ scheme: ak.sigAlg, hashAlg: ak.hashAlg });
      const quote = marshalQuote({ extraData: new Uint8Array(32), selection: [{ hashAlg: ALG.SHA256, pcrs: [0, 7] }], pcrDigest: new Uint8Array(32) });
      expect(parseTPMSAttest(quote).quote?.pcrSelect).toEqual([{ hashAlg: ALG.SHA256, pcrs: [0, 7] }]);
      expect(parseTPMTSignature(signQuote(ak, quote)).sigAlg).toBe(ak.sigAlg);
    });
  }

  const eccBad = (() => {
    const ak = makeAK("ecc-p256");
    const b = Uint8Array.from(ak.tpmtPublic);
    b[b.length - 1] ^= 1; // y no longer on the curve
    return b;
  })();
  const cases: { name: string; bytes: Uint8Array; structure: string }[] = [
    { name: "KEYEDHASH object", bytes: new Writer().u16(0x0008).u16(ALG.SHA256).done(), structure: "TPMT_PUBLIC.type" },
    { name: "unknown nameAlg", bytes: new Writer().u16(ALG.RSA).u16(0x0099).done(), structure: "TPMT_PUBLIC.nameAlg" },
    { name: "point not on the curve", bytes: eccBad, structure: "TPMU_PUBLIC_ID" },
    { name: "unknown curve", bytes: new Writer().u16(ALG.ECC).u16(ALG.SHA256).u32(0).tpm2b(new Uint8Array()).u16(ALG.NULL).u16(ALG.NULL).u16(0x0099).done(), structure: "TPMS_ECC_PARMS.curveID" },
    { name: "RSA modulus shorter than keyBits", bytes: new Writer().u16(ALG.RSA).u16(ALG.SHA256).u32(0).tpm2b(new Uint8Array()).u16(ALG.NULL).u16(ALG.NULL).u16(2048).u32(0).tpm2b(new Uint8Array(128).fill(0xff)).done(), structure: "TPM2B_PUBLIC_KEY_RSA" },
    { name: "unknown RSA scheme", bytes: new Writer().u16(ALG.RSA).u16(ALG.SHA256).u32(0).tpm2b(new Uint8Array()).u16(ALG.NULL).u16(0x0099).done(), structure: "TPMS_RSA_PARMS.scheme.scheme" },
    { name: "authPolicy longer than a digest", bytes: new Writer().u16(ALG.RSA).u16(ALG.SHA256).u32(0).tpm2b(new Uint8Array(65)).done(), structure: "TPMT_PUBLIC.authPolicy" },
  ];
  for (const tc of cases) {
    it(`refuses ${tc.name}`, () => {
      expect(expectParseError(() => parseTPMTPublic(tc.bytes)).structure).toBe(tc.structure);
    });
  }
});

describe("Reader", () => {
  it("reports absolute offsets for nested buffers and reads little-endian when asked", () => {
    const r = new Reader(Uint8Array.of(1, 0, 0, 0), true, 100);
    expect(r.u32("x")).toBe(1);
    expect(expectParseError(() => r.u8("y"))).toMatchObject({ structure: "y", offset: 104 });
  });
});
