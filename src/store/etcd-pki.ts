/**
 * The managed etcd cluster's PKI: a CA that only Coordinators can make (its P-256 key is derived
 * from the master secret, HKDF label "etcd-ca", so every Coordinator holding the secrets makes the
 * same CA without it ever being stored or sent), and a member certificate per Coordinator, signed by
 * it, for etcd's client and peer TLS (both sides authenticated: --client-cert-auth,
 * --peer-client-cert-auth). Certificates are encoded with src/atls/der.ts.
 */
import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { isIP } from "node:net";
import * as der from "../atls/der.js";
import { toPEM } from "../atls/certificate.js";
import { InvalidArgumentError } from "../core/errors.js";

/** etcdCAInfo is the HKDF label of the etcd CA key. */
export const etcdCAInfo = "etcd-ca";

const ecdsaWithSHA256 = der.sequence(der.oid("1.2.840.10045.4.3.2"));
const p256Order = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

/** caValidity is the CA's fixed validity, so every Coordinator encodes the same CA certificate fields. */
const caValidity = { notBefore: new Date("2024-01-01T00:00:00Z"), notAfter: new Date("2049-12-31T00:00:00Z") };

function name(cn: string): Buffer {
  return der.sequence(der.set(der.sequence(der.oid("2.5.4.3"), der.utf8String(cn))));
}

function extension(oidStr: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(oidStr), ...(critical ? [der.tlv(0x01, Buffer.from([0xff]))] : []), der.octetString(value));
}

/** ipBytes encodes an IPv4 address for a subjectAltName iPAddress. */
function ipBytes(ip: string): Buffer {
  if (isIP(ip) !== 4) throw new InvalidArgumentError(`etcd certificate: ${ip} is not an IPv4 address`);
  return Buffer.from(ip.split(".").map(Number));
}

interface CertSpec {
  serial: Buffer;
  subject: string;
  issuer: string;
  spki: Buffer;
  signer: KeyObject;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  ips: string[];
}

function buildCertificate(c: CertSpec): Buffer {
  const exts = c.ca
    ? [
        extension("2.5.29.19", true, der.sequence(der.tlv(0x01, Buffer.from([0xff])))),
        // keyUsage: keyCertSign (bit 5) and cRLSign (bit 6): 0b0000011 → byte 0x06, 1 unused bit.
        extension("2.5.29.15", true, der.tlv(0x03, Buffer.from([0x01, 0x06]))),
      ]
    : [
        extension("2.5.29.19", true, der.sequence()),
        // keyUsage: digitalSignature (bit 0): byte 0x80, 7 unused bits.
        extension("2.5.29.15", true, der.tlv(0x03, Buffer.from([0x07, 0x80]))),
        extension("2.5.37", false, der.sequence(der.oid("1.3.6.1.5.5.7.3.1"), der.oid("1.3.6.1.5.5.7.3.2"))),
        extension("2.5.29.17", false, der.sequence(...c.ips.map((ip) => der.tlv(0x87, ipBytes(ip))))),
      ];
  const tbs = der.sequence(
    der.explicit(0, der.unsignedInteger(Buffer.from([2]))),
    der.unsignedInteger(c.serial),
    ecdsaWithSHA256,
    name(c.issuer),
    der.sequence(der.time(c.notBefore), der.time(c.notAfter)),
    name(c.subject),
    c.spki,
    der.explicit(3, der.sequence(...exts)),
  );
  return der.sequence(tbs, ecdsaWithSHA256, der.bitString(sign("sha256", tbs, c.signer)));
}

/** EtcdCA is the cluster's etcd CA: its certificate (PEM) and its private key. Never log the key. */
export interface EtcdCA {
  certPEM: string;
  key: KeyObject;
}

/**
 * deriveEtcdCA makes the etcd CA of the cluster (masterSecret, clusterID): the key is
 * HKDF-SHA256(masterSecret, salt=clusterID, info="etcd-ca", 32) reduced into P-256's scalar range;
 * subject, serial and validity are fixed, so every Coordinator makes an equivalent certificate.
 */
export function deriveEtcdCA(masterSecret: Uint8Array, clusterID: Uint8Array): EtcdCA {
  const okm = BigInt(`0x${Buffer.from(hkdfSync("sha256", masterSecret, clusterID, Buffer.from(etcdCAInfo), 32)).toString("hex")}`);
  const d = Buffer.from(((okm % (p256Order - 1n)) + 1n).toString(16).padStart(64, "0"), "hex");
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(d);
  const pub = ecdh.getPublicKey();
  const b64 = (b: Buffer) => b.toString("base64url");
  const key = createPrivateKey({ key: { kty: "EC", crv: "P-256", d: b64(d), x: b64(pub.subarray(1, 33)), y: b64(pub.subarray(33, 65)) }, format: "jwk" });
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const subject = `attested-mesh etcd CA ${Buffer.from(clusterID).toString("hex").slice(0, 16)}`;
  const cert = buildCertificate({ serial: Buffer.from([0x01]), subject, issuer: subject, spki, signer: key, ...caValidity, ca: true, ips: [] });
  return { certPEM: toPEM(cert, "CERTIFICATE"), key };
}

/** MemberCredentials are one etcd member's certificate and key (PEM), used for client and peer TLS. */
export interface MemberCredentials {
  certPEM: string;
  keyPEM: string;
}

/**
 * issueMemberCertificate makes a fresh P-256 key and a certificate for it, signed by `ca`, valid
 * for TLS server and client use at the IP addresses `ips` (the member's VPN IP and loopback).
 */
export function issueMemberCertificate(ca: EtcdCA, caSubjectOf: string, memberName: string, ips: string[]): MemberCredentials {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x40;
  const now = Date.now();
  const cert = buildCertificate({
    serial,
    subject: memberName,
    issuer: caSubjectOf,
    spki: publicKey.export({ type: "spki", format: "der" }),
    signer: ca.key,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + 10 * 365 * 24 * 3600_000),
    ca: false,
    ips,
  });
  return { certPEM: toPEM(cert, "CERTIFICATE"), keyPEM: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** caSubject is the subject of the CA deriveEtcdCA makes for clusterID. */
export function caSubject(clusterID: Uint8Array): string {
  return `attested-mesh etcd CA ${Buffer.from(clusterID).toString("hex").slice(0, 16)}`;
}
