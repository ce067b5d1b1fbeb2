/**
 * The project's simulated-TPM test CA (DESIGN.md "Measurement policy"). A simulated TPM (swtpm) is
 * provisioned like a GCE vTPM: an AK template in NV and an AK certificate signed by this CA
 * (tpm-provision.ts). THE PRIVATE KEY BELOW IS PUBLIC BY DESIGN: anyone can sign an AK certificate
 * with it, so an AK that chains to this CA proves nothing about hardware. Validators accept it only
 * when the policy says `"tpm": {"allowTestRoot": true}` (the local demo and the tests), never by
 * default, and `meshctl verify` names it as the root that vouched.
 */
import { createPrivateKey, sign, type KeyObject } from "node:crypto";

import * as der from "../atls/der.js";

/** TPM_TEST_CA_NAME is how verdicts name this root. */
export const TPM_TEST_CA_NAME = "attested-mesh simulated TPM test CA (test root: its private key is public)";

/** TPM_TEST_CA_KEY_PEM is the test CA's EC P-256 private key. Public on purpose; see the module comment. */
export const TPM_TEST_CA_KEY_PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/WPpLPPfGS/HPTO4
FWSNbgOV5XbTY7Fh1I0QQ47GikihRANCAAS7DooQo80epOR/A2ptpR+8clBIM6XQ
MqityIHo2U9PrPPE0y/kq1rhz1zoYdmEjufa071mwGyXxKFImWVY0tvp
-----END PRIVATE KEY-----
`;

/**
 * TPM_TEST_CA_CERT_PEM is the test CA's self-signed certificate (CA, pathlen 0, keyCertSign, valid
 * 2025-2125), made once with buildCertificate from the key above and pinned by its DER.
 */
export const TPM_TEST_CA_CERT_PEM = `-----BEGIN CERTIFICATE-----
MIIB8TCCAZegAwIBAgIFWhflfKAwCgYIKoZIzj0EAwIwazE7MDkGA1UECgwyYXR0
ZXN0ZWQtbWVzaCAodGVzdCBDQTogaXRzIHByaXZhdGUga2V5IGlzIHB1YmxpYykx
LDAqBgNVBAMMI2F0dGVzdGVkLW1lc2ggc2ltdWxhdGVkIFRQTSB0ZXN0IENBMCAX
DTI1MDEwMTAwMDAwMFoYDzIxMjUwMTAxMDAwMDAwWjBrMTswOQYDVQQKDDJhdHRl
c3RlZC1tZXNoICh0ZXN0IENBOiBpdHMgcHJpdmF0ZSBrZXkgaXMgcHVibGljKTEs
MCoGA1UEAwwjYXR0ZXN0ZWQtbWVzaCBzaW11bGF0ZWQgVFBNIHRlc3QgQ0EwWTAT
BgcqhkjOPQIBBggqhkjOPQMBBwNCAAS7DooQo80epOR/A2ptpR+8clBIM6XQMqit
yIHo2U9PrPPE0y/kq1rhz1zoYdmEjufa071mwGyXxKFImWVY0tvpoyYwJDASBgNV
HRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBF
AiEAqPjnMH94iLz4Q2D0OBxbrj7VMkPeljeNoO20kcpxr3UCIFg3bOTyPH47rK66
7kcQIijJyeRXYay5RZN63DTse8bV
-----END CERTIFICATE-----
`;

/** tpmTestCACertDER returns the test CA certificate's DER. */
export function tpmTestCACertDER(): Buffer {
  return Buffer.from(TPM_TEST_CA_CERT_PEM.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
}

/** tpmTestCAKey returns the test CA's private key object. */
export function tpmTestCAKey(): KeyObject {
  return createPrivateKey(TPM_TEST_CA_KEY_PEM);
}

const oids = {
  ecdsaWithSHA256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
} as const;

/** CertificateParams describe a certificate signed with ECDSA P-256/SHA-256 by `signer`. */
export interface CertificateParams {
  /** issuer and subject are Name DER (see nameDER). */
  issuer: Uint8Array;
  subject: Uint8Array;
  /** spki is the certified key's SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  serial: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** ca: basicConstraints CA with pathlen 0 and keyCertSign; otherwise an end entity with digitalSignature. */
  ca: boolean;
  signer: KeyObject;
}

/** nameDER encodes a Name of an organization (optional) and a common name, as UTF8Strings. */
export function nameDER(commonName: string, organization?: string): Buffer {
  const rdn = (id: string, v: string): Buffer => der.set(der.sequence(der.oid(id), der.utf8String(v)));
  return der.sequence(...(organization ? [rdn(oids.organization, organization)] : []), rdn(oids.commonName, commonName));
}

/**
 * buildCertificate encodes and signs an X.509 v3 certificate (critical basicConstraints and
 * keyUsage). Deterministic apart from the ECDSA signature.
 */
export function buildCertificate(p: CertificateParams): Buffer {
  const sigAlg = der.sequence(der.oid(oids.ecdsaWithSHA256));
  const critical = der.tlv(der.Tag.boolean, Buffer.from([0xff]));
  const basic = p.ca ? der.sequence(der.tlv(der.Tag.boolean, Buffer.from([0xff])), der.unsignedInteger(Buffer.from([0]))) : der.sequence();
  // keyUsage BIT STRING: digitalSignature is bit 0 (0x80); keyCertSign bit 5 and cRLSign bit 6 (0x06).
  const usage = p.ca ? der.tlv(der.Tag.bitString, Buffer.from([0x01, 0x06])) : der.tlv(der.Tag.bitString, Buffer.from([0x07, 0x80]));
  const tbs = der.sequence(
    der.explicit(0, der.unsignedInteger(Buffer.from([2]))),
    der.unsignedInteger(Buffer.from(p.serial)),
    sigAlg,
    Buffer.from(p.issuer),
    der.sequence(der.time(p.notBefore), der.time(p.notAfter)),
    Buffer.from(p.subject),
    Buffer.from(p.spki),
    der.explicit(3, der.sequence(
      der.sequence(der.oid(oids.basicConstraints), critical, der.octetString(basic)),
      der.sequence(der.oid(oids.keyUsage), critical, der.octetString(usage)),
    )),
  );
  return der.sequence(tbs, sigAlg, der.bitString(sign("sha256", tbs, p.signer)));
}

/** tpmTestCASubject is the test CA's Name DER (the issuer of every AK certificate it signs). */
export function tpmTestCASubject(): Buffer {
  return nameDER("attested-mesh simulated TPM test CA", "attested-mesh (test CA: its private key is public)");
}
