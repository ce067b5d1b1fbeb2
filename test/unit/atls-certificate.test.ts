import { generateKeyPairSync, X509Certificate } from "node:crypto";

import { describe, expect, it } from "vitest";

import {
  backdateMs,
  buildSelfSignedCertificate,
  createAttestedCertificate,
  findAttestation,
  inspectCertificate,
  spkiHash,
  type ExtensionSpec,
} from "../../src/atls/certificate.js";
import * as der from "../../src/atls/der.js";
import { ATLSError, atlsReasonOf } from "../../src/atls/errors.js";
import { newNonce, nonceFromServername } from "../../src/atls/nonce.js";
import { TestIssuer, TestValidator, testPlatformOID } from "../helpers/attestation-test.js";

const now = Date.UTC(2030, 0, 15, 12, 0, 0);

function keyPair(kind: "p256" | "p384" = "p256") {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: kind === "p256" ? "P-256" : "P-384" });
  return { spki: publicKey.export({ type: "spki", format: "der" }), privateKey };
}

function cert(over: { extensions?: ExtensionSpec[]; notBefore?: number; notAfter?: number; kind?: "p256" | "p384" } = {}): Buffer {
  const k = keyPair(over.kind);
  return buildSelfSignedCertificate({
    commonName: "unit",
    spki: k.spki,
    privateKey: k.privateKey,
    notBefore: new Date(over.notBefore ?? now - 60_000),
    notAfter: new Date(over.notAfter ?? now + 60_000),
    extensions: over.extensions ?? [{ oid: testPlatformOID, value: Buffer.from("{}") }],
  });
}

describe("der", () => {
  const oids = ["1.2.840.10045.4.3.2", "2.5.4.3", testPlatformOID, "2.999.1", "0.9.2342"];
  for (const o of oids) {
    it(`round-trips OID ${o}`, () => {
      const el = der.readElement(der.oid(o));
      expect(der.decodeOID(el.content)).toBe(o);
    });
  }
  for (const d of [new Date(Date.UTC(2030, 5, 1, 1, 2, 3)), new Date(Date.UTC(2051, 0, 1)), new Date(Date.UTC(1999, 11, 31, 23, 59, 59))]) {
    it(`round-trips time ${d.toISOString()}`, () => {
      expect(der.decodeTime(der.readElement(der.time(d))).getTime()).toBe(d.getTime());
    });
  }
  it("encodes long lengths and refuses overruns", () => {
    const big = der.octetString(Buffer.alloc(70_000, 1));
    expect(der.readElement(big).content.length).toBe(70_000);
    expect(() => der.readElement(big.subarray(0, 1000))).toThrow(der.DERError);
  });
  it("encodes unsigned integers minimally", () => {
    expect(der.unsignedInteger(Buffer.from([0, 0, 0x7f]))).toEqual(Buffer.from([2, 1, 0x7f]));
    expect(der.unsignedInteger(Buffer.from([0x80]))).toEqual(Buffer.from([2, 2, 0, 0x80]));
  });
});

describe("nonce", () => {
  it("newNonce is 32 random bytes as two DNS labels of 32 lower-case hex characters", () => {
    const a = newNonce();
    const b = newNonce();
    expect(a.servername).toMatch(/^[0-9a-f]{32}\.[0-9a-f]{32}$/);
    expect(a.servername.replace(".", "")).toBe(a.bytes.toString("hex"));
    expect(a.bytes.length).toBe(32);
    expect(a.servername).not.toBe(b.servername);
    expect(nonceFromServername(a.servername)).toEqual(a.bytes);
  });
  const bad = [
    "", "example.com", "a".repeat(63), "a".repeat(65), "A".repeat(64), "g".repeat(64), `${"a".repeat(63)}.`,
    // The first version's single 64-character label (longer than DNS allows) is no longer accepted.
    "a".repeat(64),
    `${"A".repeat(32)}.${"a".repeat(32)}`, `${"a".repeat(31)}.${"a".repeat(33)}`, `${"a".repeat(32)}.${"a".repeat(32)}.`,
    `${"a".repeat(32)}..${"a".repeat(32)}`, `${"a".repeat(32)}.${"a".repeat(32)}.example`, `${"a".repeat(32)}.${"g".repeat(32)}`,
  ];
  for (const s of bad) {
    it(`nonceFromServername refuses ${JSON.stringify(s.length > 20 ? `${s.slice(0, 8)}…(${s.length})` : s)}`, () => {
      expect(nonceFromServername(s)).toBeUndefined();
    });
  }
});

describe("createAttestedCertificate", () => {
  it("binds the nonce and the SPKI hash of a fresh P-256 key, carried under the issuer OID", async () => {
    const issuer = new TestIssuer();
    const nonce = newNonce().bytes;
    const pair = await createAttestedCertificate(issuer, nonce, { now, validityMs: 120_000 });
    const node = new X509Certificate(pair.certPem);
    expect(node.verify(node.publicKey)).toBe(true);
    expect(node.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");

    const info = inspectCertificate(pair.certDer, now);
    expect(info.notBefore.getTime()).toBe(now - backdateMs);
    expect(info.notAfter.getTime()).toBe(now + 120_000);
    expect(info.userData).toEqual(spkiHash(node.publicKey.export({ type: "spki", format: "der" })));
    expect(info.userData).toEqual(pair.userData);
    expect(issuer.issued).toEqual([{ nonce: nonce.toString("hex"), userData: pair.userData.toString("hex") }]);

    const { validator, document } = findAttestation(info, [new TestValidator()]);
    const verdict = await validator.validate(document, { nonce, userData: info.userData });
    expect(verdict.ok).toBe(true);
    expect(info.extensions).toEqual([{ oid: testPlatformOID, critical: false, value: document }]);
  });

  it("wraps an issuer failure with the platform", async () => {
    await expect(createAttestedCertificate(new TestIssuer({ fail: new Error("tpm busy") }), newNonce().bytes)).rejects.toThrow(
      /issue test attestation document/,
    );
  });
});

describe("inspectCertificate and findAttestation", () => {
  const flipSignature = (c: Buffer): Buffer => {
    const out = Buffer.from(c);
    out[out.length - 5] = (out[out.length - 5] ?? 0) ^ 0x01;
    return out;
  };
  const cases: { name: string; der: () => Buffer; check: string; message: RegExp }[] = [
    { name: "garbage", der: () => Buffer.from("not a certificate"), check: "certificate", message: /not a valid X\.509 certificate/ },
    { name: "bad signature", der: () => flipSignature(cert()), check: "self-signature", message: /does not verify with its own key/ },
    { name: "expired", der: () => cert({ notAfter: now - 1000 }), check: "validity", message: /certificate expired at 2030-01-15T11:59:59/ },
    { name: "not yet valid", der: () => cert({ notBefore: now + 60_000 }), check: "validity", message: /not yet valid/ },
    { name: "P-384 key", der: () => cert({ kind: "p384" }), check: "key", message: /secp384r1, want EC P-256/ },
    { name: "no extensions", der: () => cert({ extensions: [] }), check: "extension", message: /missing attestation extension.*no extensions.*test 2\.25\./ },
    {
      name: "only foreign extensions",
      der: () => cert({ extensions: [{ oid: "1.3.6.1.4.1.99999.1", value: Buffer.from([5, 0]) }] }),
      check: "extension",
      message: /missing attestation extension.*only extensions 1\.3\.6\.1\.4\.1\.99999\.1/,
    },
    {
      name: "unknown platform OID",
      der: () => cert({ extensions: [{ oid: "2.25.42", value: Buffer.from("{}") }] }),
      check: "platform",
      message: /unknown platform OID 2\.25\.42 .*this client validates: test 2\.25\.2737/,
    },
  ];
  for (const tc of cases) {
    it(`refuses ${tc.name} with check "${tc.check}"`, () => {
      let err: unknown;
      try {
        findAttestation(inspectCertificate(tc.der(), now), [new TestValidator()]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ATLSError);
      expect((err as ATLSError).check).toBe(tc.check);
      expect((err as ATLSError).message).toMatch(/^aTLS: /);
      expect((err as ATLSError).message).toMatch(tc.message);
    });
  }

  it("finds a critical extension among others", () => {
    const c = cert({
      extensions: [
        { oid: "1.2.3.4", value: Buffer.from([1]) },
        { oid: testPlatformOID, critical: true, value: Buffer.from("doc") },
      ],
    });
    const info = inspectCertificate(c, now);
    expect(info.extensions.map((e) => [e.oid, e.critical])).toEqual([
      ["1.2.3.4", false],
      [testPlatformOID, true],
    ]);
    expect(findAttestation(info, [new TestValidator()]).document.toString()).toBe("doc");
  });
});

describe("ATLSError", () => {
  it("renders as its message alone, which atlsReasonOf extracts from gRPC details", () => {
    const e = new ATLSError("nonce", "test nonce: nonce mismatch");
    expect(`${e}`).toBe("aTLS: test nonce: nonce mismatch");
    expect(e.retryable).toBe(false);
    expect(new ATLSError("connect", "x").retryable).toBe(true);
    expect(atlsReasonOf(`No connection established. Last error: ${e}. Resolution note: `)).toBe(e.message);
    expect(atlsReasonOf("14 UNAVAILABLE: something else")).toBeUndefined();
  });
});
