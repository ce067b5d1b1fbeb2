import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { Reader, TPMParseError } from "./tpm-reader.js";

/**
 * Bounds-checked unmarshalling of the TPM 2.0 structures a quote is made of (TPM 2.0 Library,
 * Part 2: TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE). Everything TPM-side is big-endian. Every
 * malformed input ends in a TPMParseError naming the structure and the byte offset; nothing else
 * escapes. The parsers check structure only; what a value means (restricted AK, signature) is
 * judged by tpm-validator.ts.
 */

/** TPM_ALG holds the TPM_ALG_ID values this module understands (Part 2, table 9). */
export const TPM_ALG = {
  RSA: 0x0001, SHA1: 0x0004, HMAC: 0x0005, AES: 0x0006, KEYEDHASH: 0x0008, SHA256: 0x000b, SHA384: 0x000c,
  SHA512: 0x000d, NULL: 0x0010, RSASSA: 0x0014, RSAES: 0x0015, RSAPSS: 0x0016, OAEP: 0x0017, ECDSA: 0x0018,
  ECDAA: 0x001a, ECC: 0x0023, SYMCIPHER: 0x0025,
} as const;

/** TPM_GENERATED_VALUE is the magic that opens every TPMS_ATTEST the TPM itself produced. */
export const TPM_GENERATED_VALUE = 0xff544347;
/** TPM_ST_ATTEST_QUOTE is the TPMS_ATTEST type of a TPM2_Quote. */
export const TPM_ST_ATTEST_QUOTE = 0x8018;

/** TPMA_OBJECT holds the objectAttributes bits the validator looks at (Part 2, 8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6,
  restricted: 1 << 16, decrypt: 1 << 17, sign: 1 << 18,
} as const;

/** hashAlgorithms maps TPM hash algorithm IDs to Node digest names and sizes in bytes. */
export const hashAlgorithms: ReadonlyMap<number, { name: string; size: number }> = new Map([
  [TPM_ALG.SHA1, { name: "sha1", size: 20 }],
  [TPM_ALG.SHA256, { name: "sha256", size: 32 }],
  [TPM_ALG.SHA384, { name: "sha384", size: 48 }],
  [TPM_ALG.SHA512, { name: "sha512", size: 64 }],
]);

/** eccCurves maps TPM_ECC_CURVE IDs to JWK curve names and coordinate sizes in bytes. */
export const eccCurves: ReadonlyMap<number, { jwk: string; size: number }> = new Map([
  [0x0003, { jwk: "P-256", size: 32 }],
  [0x0004, { jwk: "P-384", size: 48 }],
  [0x0005, { jwk: "P-521", size: 66 }],
]);

export { Reader, TPMParseError } from "./tpm-reader.js";

/** Scheme is a TPMT_*_SCHEME: the algorithm and, unless NULL, its hash (ECDAA also has a count). */
export interface Scheme {
  scheme: number;
  hashAlg?: number;
}

/** RSAParameters is TPMS_RSA_PARMS plus the modulus from TPMU_PUBLIC_ID. */
export interface RSAParameters {
  type: "rsa";
  symmetric: number;
  scheme: Scheme;
  keyBits: number;
  /** exponent is the public exponent with the TPM's 0 already replaced by 65537. */
  exponent: number;
  modulus: Uint8Array;
}

/** ECCParameters is TPMS_ECC_PARMS plus the point from TPMU_PUBLIC_ID. */
export interface ECCParameters {
  type: "ecc";
  symmetric: number;
  scheme: Scheme;
  curveID: number;
  kdf: Scheme;
  x: Uint8Array;
  y: Uint8Array;
}

/** TPMTPublic is a parsed TPMT_PUBLIC (RSA or ECC) with the public key as a Node KeyObject. */
export interface TPMTPublic {
  type: number;
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Uint8Array;
  parameters: RSAParameters | ECCParameters;
  key: KeyObject;
  /** encoded is the marshalled TPMT_PUBLIC exactly as read (what the TPM hashes for the name). */
  encoded: Uint8Array;
}

/** ClockInfo is TPMS_CLOCK_INFO. */
export interface ClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: number;
}

/** PCRSelection is one TPMS_PCR_SELECTION: a bank and the selected PCR indices in ascending order. */
export interface PCRSelection {
  hashAlg: number;
  pcrs: number[];
}

/** QuoteInfo is TPMS_QUOTE_INFO. */
export interface QuoteInfo {
  pcrSelect: PCRSelection[];
  pcrDigest: Uint8Array;
}

/** TPMSAttest is a parsed TPMS_ATTEST; `quote` is present only when type is TPM_ST_ATTEST_QUOTE. */
export interface TPMSAttest {
  magic: number;
  type: number;
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clockInfo: ClockInfo;
  firmwareVersion: bigint;
  quote?: QuoteInfo;
}

/** TPMTSignature is a parsed TPMT_SIGNATURE: RSASSA/RSAPSS carry `sig`, ECDSA carries r and s. */
export type TPMTSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; sig: Uint8Array }
  | { sigAlg: typeof TPM_ALG.ECDSA; hashAlg: number; r: Uint8Array; s: Uint8Array };

function hex4(v: number): string {
  return `0x${v.toString(16).padStart(4, "0")}`;
}

const symmetricAlgorithms = new Set([TPM_ALG.AES, 0x0013 /* SM4 */, 0x0026 /* CAMELLIA */]);
const rsaSchemes = new Set([TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.RSAES, TPM_ALG.OAEP]);
const eccSchemes = new Set([TPM_ALG.ECDSA, 0x0019 /* ECDH */, TPM_ALG.ECDAA, 0x001b /* SM2 */, 0x001c /* ECSCHNORR */, 0x001d /* ECMQV */]);
const kdfSchemes = new Set([0x0007 /* MGF1 */, 0x0020, 0x0021, 0x0022 /* KDF1_SP800_56A, KDF2, KDF1_SP800_108 */]);

function readScheme(r: Reader, structure: string, allowed: ReadonlySet<number>): Scheme {
  const at = r.offset;
  const scheme = r.u16(`${structure}.scheme`);
  if (scheme === TPM_ALG.NULL) return { scheme };
  if (!allowed.has(scheme)) throw new TPMParseError(`${structure}.scheme`, at, `unsupported scheme ${hex4(scheme)}`);
  // RSAES is the one scheme without details; ECDAA adds a count after the hash.
  if (scheme === TPM_ALG.RSAES) return { scheme };
  const hashAlg = r.u16(`${structure}.details.hashAlg`);
  if (scheme === TPM_ALG.ECDAA) r.u16(`${structure}.details.count`);
  return { scheme, hashAlg };
}

function readSymDefObject(r: Reader, structure: string): number {
  const at = r.offset;
  const algorithm = r.u16(`${structure}.algorithm`);
  if (algorithm === TPM_ALG.NULL) return algorithm;
  if (!symmetricAlgorithms.has(algorithm)) throw new TPMParseError(`${structure}.algorithm`, at, `unsupported algorithm ${hex4(algorithm)}`);
  r.u16(`${structure}.keyBits`);
  r.u16(`${structure}.mode`);
  return algorithm;
}

function readRSA(r: Reader): RSAParameters {
  const symmetric = readSymDefObject(r, "TPMS_RSA_PARMS.symmetric");
  const scheme = readScheme(r, "TPMS_RSA_PARMS.scheme", rsaSchemes);
  const bitsAt = r.offset;
  const keyBits = r.u16("TPMS_RSA_PARMS.keyBits");
  if (keyBits < 1024 || keyBits > 16384 || keyBits % 8 !== 0) throw new TPMParseError("TPMS_RSA_PARMS.keyBits", bitsAt, `unsupported key size ${keyBits}`);
  const exponentRaw = r.u32("TPMS_RSA_PARMS.exponent");
  const exponent = exponentRaw === 0 ? 65537 : exponentRaw;
  if (exponent < 3 || exponent % 2 === 0) throw new TPMParseError("TPMS_RSA_PARMS.exponent", bitsAt + 2, `invalid exponent ${exponent}`);
  const modAt = r.offset;
  const modulus = r.tpm2b("TPM2B_PUBLIC_KEY_RSA");
  if (modulus.length !== keyBits / 8) throw new TPMParseError("TPM2B_PUBLIC_KEY_RSA", modAt, `modulus is ${modulus.length} bytes, keyBits says ${keyBits / 8}`);
  if ((modulus[0] & 0x80) === 0) throw new TPMParseError("TPM2B_PUBLIC_KEY_RSA", modAt, `modulus is shorter than ${keyBits} bits`);
  return { type: "rsa", symmetric, scheme, keyBits, exponent, modulus };
}

function readECC(r: Reader): ECCParameters {
  const symmetric = readSymDefObject(r, "TPMS_ECC_PARMS.symmetric");
  const scheme = readScheme(r, "TPMS_ECC_PARMS.scheme", eccSchemes);
  const curveAt = r.offset;
  const curveID = r.u16("TPMS_ECC_PARMS.curveID");
  const curve = eccCurves.get(curveID);
  if (!curve) throw new TPMParseError("TPMS_ECC_PARMS.curveID", curveAt, `unsupported curve ${hex4(curveID)}`);
  const kdf = readScheme(r, "TPMS_ECC_PARMS.kdf", kdfSchemes);
  const x = r.tpm2b("TPMS_ECC_POINT.x", curve.size);
  const y = r.tpm2b("TPMS_ECC_POINT.y", curve.size);
  return { type: "ecc", symmetric, scheme, curveID, kdf, x, y };
}

function leftPad(b: Uint8Array, size: number): Uint8Array {
  if (b.length >= size) return b;
  const out = new Uint8Array(size);
  out.set(b, size - b.length);
  return out;
}

function publicKeyOf(p: RSAParameters | ECCParameters, at: number): KeyObject {
  try {
    if (p.type === "rsa") {
      const e = Buffer.alloc(4);
      e.writeUInt32BE(p.exponent);
      return createPublicKey({ key: { kty: "RSA", n: Buffer.from(p.modulus).toString("base64url"), e: e.subarray(e.findIndex((b) => b !== 0)).toString("base64url") }, format: "jwk" });
    }
    const curve = eccCurves.get(p.curveID)!;
    const b64 = (v: Uint8Array) => Buffer.from(leftPad(v, curve.size)).toString("base64url");
    return createPublicKey({ key: { kty: "EC", crv: curve.jwk, x: b64(p.x), y: b64(p.y) }, format: "jwk" });
  } catch (cause) {
    throw new TPMParseError("TPMU_PUBLIC_ID", at, `not a valid ${p.type.toUpperCase()} public key`, { cause });
  }
}

/** readTPMTPublic reads a TPMT_PUBLIC from r's offset to the end of its buffer. */
function readTPMTPublic(r: Reader): TPMTPublic {
  const start = r.offset;
  const type = r.u16("TPMT_PUBLIC.type");
  if (type !== TPM_ALG.RSA && type !== TPM_ALG.ECC) throw new TPMParseError("TPMT_PUBLIC.type", start, `unsupported object type ${hex4(type)}`);
  const nameAt = r.offset;
  const nameAlg = r.u16("TPMT_PUBLIC.nameAlg");
  if (!hashAlgorithms.has(nameAlg)) throw new TPMParseError("TPMT_PUBLIC.nameAlg", nameAt, `unsupported hash ${hex4(nameAlg)}`);
  const objectAttributes = r.u32("TPMT_PUBLIC.objectAttributes");
  const authPolicy = r.tpm2b("TPMT_PUBLIC.authPolicy", 64);
  const paramsAt = r.offset;
  const parameters = type === TPM_ALG.RSA ? readRSA(r) : readECC(r);
  r.end("TPMT_PUBLIC");
  const key = publicKeyOf(parameters, paramsAt);
  return { type, nameAlg, objectAttributes, authPolicy, parameters, key, encoded: r.bytes.slice(start) };
}

/**
 * parseTPMTPublic unmarshals a TPMT_PUBLIC that fills `bytes` exactly (RSA or ECC objects only)
 * and builds its public key. Throws TPMParseError.
 */
export function parseTPMTPublic(bytes: Uint8Array): TPMTPublic {
  return readTPMTPublic(new Reader(bytes));
}

/** parseTPM2BPublic unmarshals a TPM2B_PUBLIC (size-prefixed TPMT_PUBLIC, as TPM2_Create returns it). */
export function parseTPM2BPublic(bytes: Uint8Array): TPMTPublic {
  const r = new Reader(bytes);
  const size = r.u16("TPM2B_PUBLIC.size");
  if (size !== r.remaining) throw new TPMParseError("TPM2B_PUBLIC.size", 0, `size ${size} but ${r.remaining} bytes follow`);
  return readTPMTPublic(r);
}

/** objectName is the TPM name of a public area: nameAlg ‖ H_nameAlg(TPMT_PUBLIC). */
export function objectName(pub: TPMTPublic): Uint8Array {
  const alg = hashAlgorithms.get(pub.nameAlg)!;
  const out = new Uint8Array(2 + alg.size);
  new DataView(out.buffer).setUint16(0, pub.nameAlg);
  out.set(createHash(alg.name).update(pub.encoded).digest(), 2);
  return out;
}

function readPCRSelection(r: Reader): PCRSelection[] {
  const countAt = r.offset;
  const count = r.u32("TPML_PCR_SELECTION.count");
  if (count > 16) throw new TPMParseError("TPML_PCR_SELECTION.count", countAt, `count ${count} exceeds 16`);
  const out: PCRSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16(`TPMS_PCR_SELECTION[${i}].hash`);
    const sizeAt = r.offset;
    const size = r.u8(`TPMS_PCR_SELECTION[${i}].sizeofSelect`);
    if (size > 32) throw new TPMParseError(`TPMS_PCR_SELECTION[${i}].sizeofSelect`, sizeAt, `size ${size} exceeds 32`);
    const bitmap = r.take(size, `TPMS_PCR_SELECTION[${i}].pcrSelect`);
    const pcrs: number[] = [];
    for (let bit = 0; bit < size * 8; bit++) if ((bitmap[bit >> 3] >> (bit & 7)) & 1) pcrs.push(bit);
    out.push({ hashAlg, pcrs });
  }
  return out;
}

/**
 * parseTPMSAttest unmarshals a TPMS_ATTEST that fills `bytes` exactly. The magic and type are
 * reported, not judged; the TPMS_QUOTE_INFO body is parsed only for TPM_ST_ATTEST_QUOTE (any other
 * body is left opaque). Throws TPMParseError.
 */
export function parseTPMSAttest(bytes: Uint8Array): TPMSAttest {
  const r = new Reader(bytes);
  const magic = r.u32("TPMS_ATTEST.magic");
  const type = r.u16("TPMS_ATTEST.type");
  const qualifiedSigner = r.tpm2b("TPMS_ATTEST.qualifiedSigner", 2 + 64);
  const extraData = r.tpm2b("TPMS_ATTEST.extraData", 64);
  const clockInfo: ClockInfo = {
    clock: r.u64("TPMS_CLOCK_INFO.clock"),
    resetCount: r.u32("TPMS_CLOCK_INFO.resetCount"),
    restartCount: r.u32("TPMS_CLOCK_INFO.restartCount"),
    safe: r.u8("TPMS_CLOCK_INFO.safe"),
  };
  const firmwareVersion = r.u64("TPMS_ATTEST.firmwareVersion");
  const attest: TPMSAttest = { magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion };
  if (type !== TPM_ST_ATTEST_QUOTE) return attest;
  const pcrSelect = readPCRSelection(r);
  const pcrDigest = r.tpm2b("TPMS_QUOTE_INFO.pcrDigest", 64);
  r.end("TPMS_ATTEST");
  return { ...attest, quote: { pcrSelect, pcrDigest } };
}

/**
 * parseTPMTSignature unmarshals a TPMT_SIGNATURE that fills `bytes` exactly: RSASSA, RSAPSS or
 * ECDSA (other schemes cannot sign a quote we accept). Throws TPMParseError.
 */
export function parseTPMTSignature(bytes: Uint8Array): TPMTSignature {
  const r = new Reader(bytes);
  const sigAlg = r.u16("TPMT_SIGNATURE.sigAlg");
  const hashAlg = r.u16("TPMT_SIGNATURE.hash");
  let out: TPMTSignature;
  if (sigAlg === TPM_ALG.RSASSA || sigAlg === TPM_ALG.RSAPSS) {
    const sig = r.tpm2b("TPMS_SIGNATURE_RSA.sig", 2048);
    if (sig.length === 0) throw new TPMParseError("TPMS_SIGNATURE_RSA.sig", 4, "empty signature");
    out = { sigAlg, hashAlg, sig };
  } else if (sigAlg === TPM_ALG.ECDSA) {
    const rr = r.tpm2b("TPMS_SIGNATURE_ECC.signatureR", 66);
    const s = r.tpm2b("TPMS_SIGNATURE_ECC.signatureS", 66);
    out = { sigAlg, hashAlg, r: rr, s };
  } else {
    throw new TPMParseError("TPMT_SIGNATURE.sigAlg", 0, `unsupported signature algorithm ${hex4(sigAlg)}`);
  }
  r.end("TPMT_SIGNATURE");
  return out;
}
