import { createHash, generateKeyPair, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import { promisify } from "node:util";

import type { Issuer, Validator } from "../attestation/attestation.js";
import * as der from "./der.js";
import { ATLSError } from "./errors.js";

/**
 * The aTLS certificate (DESIGN.md "Attested TLS"): self-signed, ECDSA P-256 with SHA-256, one
 * non-critical extension whose OID is the issuer's platform OID and whose extnValue OCTET STRING
 * holds the attestation document bytes as they are (UTF-8 JSON, not further DER-wrapped), so
 * `openssl x509 -text` shows the document and any tool can lift it out.
 */

const ecdsaWithSHA256 = "1.2.840.10045.4.3.2";
const commonNameOID = "2.5.4.3";

/** defaultValidityMs is how long a served certificate stays valid after it was made. */
export const defaultValidityMs = 10 * 60_000;

/**
 * backdateMs is how far notBefore lies before issuance: it absorbs clock skew between a client and
 * the server. Freshness comes from the nonce, not from the validity window.
 */
export const backdateMs = 5 * 60_000;

/** ExtensionSpec is one certificate extension to encode. */
export interface ExtensionSpec {
  oid: string;
  critical?: boolean;
  value: Uint8Array;
}

/** SelfSignedParams describes a self-signed certificate; `privateKey` must belong to `spki`. */
export interface SelfSignedParams {
  commonName: string;
  /** spki is the SubjectPublicKeyInfo DER of the certificate key (an EC P-256 key). */
  spki: Uint8Array;
  privateKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  extensions: ExtensionSpec[];
}

/**
 * buildSelfSignedCertificate encodes and signs (ECDSA with SHA-256) a v3 certificate whose issuer
 * equals its subject, returning its DER. Pure apart from a random serial number.
 */
export function buildSelfSignedCertificate(p: SelfSignedParams): Buffer {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40; // positive, 16 bytes, minimal
  const name = der.sequence(der.set(der.sequence(der.oid(commonNameOID), der.utf8String(p.commonName))));
  const sigAlg = der.sequence(der.oid(ecdsaWithSHA256));
  const parts = [
    der.explicit(0, der.unsignedInteger(Buffer.from([2]))),
    der.unsignedInteger(serial),
    sigAlg,
    name,
    der.sequence(der.time(p.notBefore), der.time(p.notAfter)),
    name,
    Buffer.from(p.spki),
  ];
  if (p.extensions.length > 0) {
    const exts = p.extensions.map((e) =>
      der.sequence(der.oid(e.oid), ...(e.critical ? [der.tlv(der.Tag.boolean, Buffer.from([0xff]))] : []), der.octetString(e.value)),
    );
    parts.push(der.explicit(3, der.sequence(...exts)));
  }
  const tbs = der.sequence(...parts);
  const signature = sign("sha256", tbs, p.privateKey); // DER-encoded ECDSA-Sig-Value
  return der.sequence(tbs, sigAlg, der.bitString(signature));
}

/** toPEM wraps DER in PEM armour with `label` ("CERTIFICATE"). */
export function toPEM(bytes: Uint8Array, label: string): string {
  const b64 = Buffer.from(bytes).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** spkiHash is userData as aTLS defines it: SHA-256 of the SubjectPublicKeyInfo DER. */
export function spkiHash(spki: Uint8Array): Buffer {
  return createHash("sha256").update(spki).digest();
}

/** AttestedKeyPair is a fresh key and the certificate carrying its attestation. Holds a private key: never log it. */
export interface AttestedKeyPair {
  keyPem: string;
  certPem: string;
  certDer: Buffer;
  /** userData is what the document binds: SHA-256 of the certificate's SPKI DER. */
  userData: Buffer;
}

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * createAttestedCertificate makes a fresh P-256 key, asks `issuer` for a document binding `nonce`
 * and the key's SPKI hash, and returns a self-signed certificate carrying it under `issuer.oid`,
 * valid from `now − backdateMs` to `now + validityMs`. Rejects with the issuer's error (wrapped).
 * Safe to call concurrently.
 */
export async function createAttestedCertificate(
  issuer: Issuer,
  nonce: Uint8Array,
  options?: { validityMs?: number; now?: number },
): Promise<AttestedKeyPair> {
  const now = options?.now ?? Date.now();
  const { publicKey, privateKey } = await generateKeyPairAsync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ type: "spki", format: "der" });
  const userData = spkiHash(spki);
  let document: Uint8Array;
  try {
    document = await issuer.issue(nonce, userData);
  } catch (cause) {
    throw new Error(`issue ${issuer.platform} attestation document`, { cause });
  }
  const certDer = buildSelfSignedCertificate({
    commonName: `attested-mesh aTLS (${issuer.platform})`,
    spki,
    privateKey,
    notBefore: new Date(now - backdateMs),
    notAfter: new Date(now + (options?.validityMs ?? defaultValidityMs)),
    extensions: [{ oid: issuer.oid, value: document }],
  });
  return {
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    certPem: toPEM(certDer, "CERTIFICATE"),
    certDer,
    userData,
  };
}

/** CertificateInfo is what inspectCertificate found in a certificate that passed its checks. */
export interface CertificateInfo {
  der: Buffer;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** spki is the certificate's SubjectPublicKeyInfo DER, exactly as encoded in it. */
  spki: Buffer;
  /** userData is SHA-256(spki). */
  userData: Buffer;
  extensions: { oid: string; critical: boolean; value: Buffer }[];
}

/**
 * inspectCertificate parses `certDer` and checks, in order, that it is a certificate ("certificate"),
 * self-issued and signed by its own key ("self-signature"), valid at `now` ms ("validity"), and keyed
 * with EC P-256 ("key"). Throws ATLSError naming the first failed check. Pure.
 */
export function inspectCertificate(certDer: Buffer, now: number): CertificateInfo {
  let cert: X509Certificate;
  let tbs: der.Element[];
  try {
    cert = new X509Certificate(certDer);
    const outer = der.children(der.readElement(certDer, 0, "certificate"), "certificate");
    if (outer[0]?.tag !== der.Tag.sequence) throw new der.DERError("no TBSCertificate");
    tbs = der.children(outer[0], "TBSCertificate");
  } catch (cause) {
    throw new ATLSError("certificate", `certificate is not a valid X.509 certificate: ${(cause as Error).message}`, { cause });
  }
  const fields = tbs[0]?.tag === 0xa0 ? tbs.slice(1) : tbs; // skip [0] version
  const [, , issuer, validity, subject, spki] = fields;
  if (!issuer || !validity || !subject || !spki) throw new ATLSError("certificate", "certificate: TBSCertificate is truncated");

  if (!issuer.raw.equals(subject.raw)) {
    throw new ATLSError("self-signature", `certificate is not self-signed: issuer "${cert.issuer}" differs from subject "${cert.subject}"`);
  }
  if (!cert.verify(cert.publicKey)) {
    throw new ATLSError("self-signature", "certificate signature does not verify with its own key");
  }

  const [nb, na] = der.children(validity, "validity");
  if (!nb || !na) throw new ATLSError("certificate", "certificate: validity is truncated");
  const notBefore = der.decodeTime(nb);
  const notAfter = der.decodeTime(na);
  if (now > notAfter.getTime()) {
    throw new ATLSError("validity", `certificate expired at ${notAfter.toISOString()} (now ${new Date(now).toISOString()})`);
  }
  if (now < notBefore.getTime()) {
    throw new ATLSError("validity", `certificate not yet valid: notBefore ${notBefore.toISOString()} (now ${new Date(now).toISOString()})`);
  }

  const key = cert.publicKey;
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    throw new ATLSError("key", `certificate key is ${key.asymmetricKeyType}${curve ? ` ${curve}` : ""}, want EC P-256`);
  }

  const extensions: CertificateInfo["extensions"] = [];
  const extField = fields.find((f) => f.tag === 0xa3);
  if (extField) {
    const [list] = der.children(extField, "extensions");
    for (const ext of list ? der.children(list, "extensions") : []) {
      const [id, second, third] = der.children(ext, "extension");
      const critical = second?.tag === der.Tag.boolean && second.content[0] !== 0;
      const value = second?.tag === der.Tag.boolean ? third : second;
      if (id?.tag !== der.Tag.oid || value?.tag !== der.Tag.octetString) throw new ATLSError("certificate", "certificate: malformed extension");
      extensions.push({ oid: der.decodeOID(id.content), critical, value: value.content });
    }
  }
  return { der: certDer, subject: cert.subject, notBefore, notAfter, spki: spki.raw, userData: spkiHash(spki.raw), extensions };
}

/**
 * findAttestation picks the first certificate extension whose OID one of `validators` handles and
 * returns that validator and the document. Throws ATLSError "extension" when the certificate has no
 * extension under the 2.25 arc, or "platform" when it has some but none is known; both name the
 * OIDs found and the ones expected.
 */
export function findAttestation(info: CertificateInfo, validators: readonly Validator[]): { validator: Validator; document: Buffer } {
  for (const ext of info.extensions) {
    const validator = validators.find((v) => v.oid === ext.oid);
    if (validator) return { validator, document: ext.value };
  }
  const known = validators.map((v) => `${v.platform} ${v.oid}`).join(", ") || "none";
  const found = info.extensions.map((e) => e.oid);
  const candidates = found.filter((o) => o.startsWith("2.25."));
  if (candidates.length > 0) {
    throw new ATLSError("platform", `unknown platform OID ${candidates.join(", ")} in the certificate (this client validates: ${known})`);
  }
  throw new ATLSError(
    "extension",
    `missing attestation extension: the certificate has ${found.length ? `only extensions ${found.join(", ")}` : "no extensions"} (want one of: ${known})`,
  );
}
