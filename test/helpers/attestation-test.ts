/**
 * TEST ONLY: an attestation "platform" for unit and integration tests that have no TPM or SEV-SNP.
 * Its document still binds the nonce and userData (with an HMAC under a fixed, public key), so aTLS
 * binding checks are exercised for real. It proves nothing about a machine: nothing under src/ may
 * import this file (test/unit/atls.test.ts guards that).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

import { verdictOf, type Binding, type Check, type Issuer, type Validator, type Verdict } from "../../src/attestation/attestation.js";

/** testPlatform is the test platform's name. */
export const testPlatform = "test";

/** testPlatformOID is the test platform's certificate extension OID. */
export const testPlatformOID = "2.25.273771003986210895282580764553241485200";

const testKey = Buffer.from("attested-mesh test attestation key: not a secret");

/** TestDocument is the JSON document layout (binary fields base64). */
export interface TestDocument {
  nonce: string;
  userData: string;
  mac: string;
  fresh: boolean;
}

function mac(nonce: Uint8Array, userData: Uint8Array): Buffer {
  return createHmac("sha256", testKey).update(nonce).update(userData).digest();
}

/** TestIssuerOptions are knobs that make the issuer misbehave in one specific way. */
export interface TestIssuerOptions {
  /** fresh is the document's fresh marker; undefined: true. */
  fresh?: boolean;
  /** wrongNonce binds a different nonce than the one asked for (MAC still valid). */
  wrongNonce?: boolean;
  /** wrongUserData binds a different userData than the certificate key's hash (MAC still valid). */
  wrongUserData?: boolean;
  /** badMac corrupts the MAC. */
  badMac?: boolean;
  /** oid overrides the extension OID (an unknown platform). */
  oid?: string;
  /** platform overrides the platform name. */
  platform?: string;
  /** fail makes issue() reject with this error. */
  fail?: Error;
}

/** IssuedRecord is what TestIssuer was asked to bind, as lower-case hex. */
export interface IssuedRecord {
  nonce: string;
  userData: string;
}

/** TestIssuer issues test documents and records every request in `issued`. Safe to call concurrently. */
export class TestIssuer implements Issuer {
  readonly platform: string;
  readonly oid: string;
  /** issued lists every (nonce, userData) asked for, in order. */
  readonly issued: IssuedRecord[] = [];

  constructor(private readonly options: TestIssuerOptions = {}) {
    this.platform = options.platform ?? testPlatform;
    this.oid = options.oid ?? testPlatformOID;
  }

  async issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array> {
    this.issued.push({ nonce: Buffer.from(nonce).toString("hex"), userData: Buffer.from(userData).toString("hex") });
    if (this.options.fail) throw this.options.fail;
    const boundNonce = this.options.wrongNonce ? Buffer.alloc(nonce.length, 0xaa) : Buffer.from(nonce);
    const boundUserData = this.options.wrongUserData ? Buffer.alloc(userData.length, 0xbb) : Buffer.from(userData);
    const tag = mac(boundNonce, boundUserData);
    if (this.options.badMac) tag[0] = (tag[0] ?? 0) ^ 0xff;
    const doc: TestDocument = {
      nonce: boundNonce.toString("base64"),
      userData: boundUserData.toString("base64"),
      mac: tag.toString("base64"),
      fresh: this.options.fresh ?? true,
    };
    return Buffer.from(JSON.stringify(doc), "utf8");
  }
}

const short = (b: Uint8Array): string => Buffer.from(b).toString("hex").slice(0, 16) + "…";

/**
 * TestValidator validates test documents. Checks: "format", "signature" (the MAC), "nonce",
 * "userData" (both skipped when the binding omits them), and "fresh marker" only when
 * `requireFresh`. Never throws.
 */
export class TestValidator implements Validator {
  readonly platform: string;
  readonly oid: string;

  constructor(options: { oid?: string; platform?: string } = {}) {
    this.platform = options.platform ?? testPlatform;
    this.oid = options.oid ?? testPlatformOID;
  }

  async validate(document: Uint8Array, binding: Binding): Promise<Verdict> {
    const checks: Check[] = [];
    let doc: TestDocument;
    try {
      const v: unknown = JSON.parse(Buffer.from(document).toString("utf8"));
      const d = v as Partial<TestDocument>;
      if (typeof d.nonce !== "string" || typeof d.userData !== "string" || typeof d.mac !== "string" || typeof d.fresh !== "boolean") {
        throw new Error("want {nonce, userData, mac: base64 strings, fresh: boolean}");
      }
      doc = d as TestDocument;
      checks.push({ name: "format", status: "passed", detail: "test document JSON" });
    } catch (err) {
      checks.push({ name: "format", status: "failed", detail: `not a test document: ${(err as Error).message}` });
      return verdictOf(this.platform, checks);
    }
    const nonce = Buffer.from(doc.nonce, "base64");
    const userData = Buffer.from(doc.userData, "base64");
    const got = Buffer.from(doc.mac, "base64");
    const want = mac(nonce, userData);
    const macOK = got.length === want.length && timingSafeEqual(got, want);
    checks.push(
      macOK
        ? { name: "signature", status: "passed", detail: "HMAC-SHA256 over nonce‖userData verifies" }
        : { name: "signature", status: "failed", detail: "HMAC-SHA256 over nonce‖userData does not verify" },
    );
    checks.push(bindingCheck("nonce", nonce, binding.nonce, "nonce mismatch: the document binds %got, our nonce is %want"));
    checks.push(
      bindingCheck("userData", userData, binding.userData, "userData %got does not match the certificate key hash %want"),
    );
    if (binding.requireFresh) {
      checks.push(
        doc.fresh
          ? { name: "fresh marker", status: "passed", detail: "peer is uninitialized" }
          : { name: "fresh marker", status: "failed", detail: "peer is already initialized (fresh=false)" },
      );
    }
    return verdictOf(this.platform, checks, { nonce: nonce.toString("hex"), userData: userData.toString("hex") });
  }
}

function bindingCheck(name: string, got: Buffer, want: Uint8Array | undefined, failure: string): Check {
  if (want === undefined) return { name, status: "skipped", detail: "no expected value given" };
  if (got.equals(Buffer.from(want))) return { name, status: "passed", detail: `matches ${short(want)}` };
  return { name, status: "failed", detail: failure.replace("%got", short(got)).replace("%want", short(want)) };
}
