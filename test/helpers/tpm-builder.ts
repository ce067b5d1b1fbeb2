import { constants, createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";

import { platformOIDs, type Issuer } from "../../src/attestation/attestation.js";
import type { MeasurementPolicy } from "../../src/attestation/policy.js";
import { buildCertificate, nameDER, tpmTestCAKey, tpmTestCASubject } from "../../src/attestation/tpm-test-ca.js";

export { nameDER };

/**
 * tpm-builder makes TPM quote evidence in software for tests: an AK as a TPMT_PUBLIC around a Node
 * key, a TPMS_ATTEST quote, its TPMT_SIGNATURE and the `tpm` attestation document. It marshals on
 * its own (it does not reuse src/attestation's parsers or encoder) so that tests compare two
 * independent readings of TPM 2.0 Part 2. Every field can be overridden to build malformed or lying
 * evidence.
 */

/** ALG holds the TPM_ALG_ID values the builder writes. */
export const ALG = { RSA: 0x0001, SHA1: 0x0004, SHA256: 0x000b, SHA384: 0x000c, NULL: 0x0010, RSASSA: 0x0014, RSAES: 0x0015, RSAPSS: 0x0016, ECDSA: 0x0018, ECC: 0x0023, AES: 0x0006, CFB: 0x0043 } as const;

/** ATTR holds TPMA_OBJECT bits; `akAttributes` is what tpm2_createak sets. */
export const ATTR = { fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6, restricted: 1 << 16, decrypt: 1 << 17, sign: 1 << 18 } as const;

/** akAttributes: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign. */
export const akAttributes = ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.userWithAuth | ATTR.restricted | ATTR.sign;

/** Writer appends big-endian TPM fields. */
export class Writer {
  private readonly parts: number[] = [];
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(v >>> 16).u16(v & 0xffff);
  }
  u64(v: bigint): this {
    return this.u32(Number(v >> 32n)).u32(Number(v & 0xffffffffn));
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  tpm2b(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** AKKind names a kind of software AK. */
export type AKKind = "rsa-rsassa" | "rsa-rsapss" | "ecc-p256" | "ecc-p384";

/** AKOptions override parts of the AK's public area. */
export interface AKOptions {
  attributes?: number;
  /** symmetric writes a TPMT_SYM_DEF_OBJECT of AES-128-CFB instead of NULL. */
  symmetric?: boolean;
  /** scheme overrides the signing scheme (e.g. ALG.NULL); hashAlg its hash. */
  scheme?: number;
  hashAlg?: number;
  rsaBits?: number;
  /** keySlot picks one of several cached keys per kind (default 0); generating RSA keys is slow. */
  keySlot?: number;
  /** publicKey marshals this key (of `kind`) instead of a generated one; the TestAK then cannot sign. */
  publicKey?: KeyObject;
}

const keyCache = new Map<string, { privateKey: KeyObject; publicKey: KeyObject }>();

function cachedPair(kind: AKKind, bits: number, slot: number): { privateKey: KeyObject; publicKey: KeyObject } {
  const id = `${kind.slice(0, 3)}:${kind === "ecc-p384" ? 384 : kind === "ecc-p256" ? 256 : bits}:${slot}`;
  let pair = keyCache.get(id);
  if (!pair) {
    pair = kind.startsWith("rsa") ? generateKeyPairSync("rsa", { modulusLength: bits }) : generateKeyPairSync("ec", { namedCurve: kind === "ecc-p384" ? "P-384" : "P-256" });
    keyCache.set(id, pair);
  }
  return pair;
}

/** TestAK is a software AK: its private key and its public area in TPM form. */
export interface TestAK {
  kind: AKKind;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** sigAlg and hashAlg are what the AK signs with. */
  sigAlg: number;
  hashAlg: number;
  tpmtPublic: Uint8Array;
  tpm2bPublic: Uint8Array;
}

/** makeAK generates a key of `kind` and marshals its TPMT_PUBLIC (nameAlg SHA-256). */
export function makeAK(kind: AKKind, opts: AKOptions = {}): TestAK {
  const hashAlg = opts.hashAlg ?? (kind === "ecc-p384" ? ALG.SHA384 : ALG.SHA256);
  const w = new Writer();
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  let sigAlg: number;
  const sym = (w: Writer) => (opts.symmetric ? w.u16(ALG.AES).u16(128).u16(ALG.CFB) : w.u16(ALG.NULL));
  if (kind.startsWith("rsa")) {
    const bits = opts.rsaBits ?? 2048;
    pair = opts.publicKey ? { publicKey: opts.publicKey, privateKey: opts.publicKey } : cachedPair(kind, bits, opts.keySlot ?? 0);
    sigAlg = kind === "rsa-rsapss" ? ALG.RSAPSS : ALG.RSASSA;
    const scheme = opts.scheme ?? sigAlg;
    const n = Buffer.from(pair.publicKey.export({ format: "jwk" }).n!, "base64url");
    w.u16(ALG.RSA).u16(ALG.SHA256).u32(opts.attributes ?? akAttributes).tpm2b(new Uint8Array());
    sym(w).u16(scheme);
    if (scheme !== ALG.NULL && scheme !== ALG.RSAES) w.u16(hashAlg);
    w.u16(bits).u32(0).tpm2b(n);
  } else {
    const p384 = kind === "ecc-p384";
    pair = cachedPair(kind, 0, opts.keySlot ?? 0);
    sigAlg = ALG.ECDSA;
    const scheme = opts.scheme ?? sigAlg;
    const jwk = pair.publicKey.export({ format: "jwk" });
    w.u16(ALG.ECC).u16(ALG.SHA256).u32(opts.attributes ?? akAttributes).tpm2b(new Uint8Array());
    sym(w).u16(scheme);
    if (scheme !== ALG.NULL) w.u16(hashAlg);
    w.u16(p384 ? 0x0004 : 0x0003).u16(ALG.NULL);
    w.tpm2b(Buffer.from(jwk.x!, "base64url")).tpm2b(Buffer.from(jwk.y!, "base64url"));
  }
  const tpmtPublic = w.done();
  return { kind, ...pair, sigAlg, hashAlg, tpmtPublic, tpm2bPublic: new Writer().tpm2b(tpmtPublic).done() };
}

/** QuoteFields are the TPMS_ATTEST fields of a quote; defaults make a well-formed TPM2_Quote. */
export interface QuoteFields {
  magic?: number;
  type?: number;
  qualifiedSigner?: Uint8Array;
  extraData: Uint8Array;
  clock?: bigint;
  firmwareVersion?: bigint;
  /** selection is written as given: banks with their PCR indices (bitmap of 3 bytes). */
  selection: { hashAlg: number; pcrs: number[] }[];
  pcrDigest: Uint8Array;
}

/** marshalQuote writes a TPMS_ATTEST with a TPMS_QUOTE_INFO body. */
export function marshalQuote(f: QuoteFields): Uint8Array {
  const w = new Writer().u32(f.magic ?? 0xff544347).u16(f.type ?? 0x8018);
  w.tpm2b(f.qualifiedSigner ?? Uint8Array.from([0x00, 0x0b, ...new Uint8Array(32).fill(0x5a)])).tpm2b(f.extraData);
  w.u64(f.clock ?? 123456789n).u32(7).u32(0).u8(1).u64(f.firmwareVersion ?? 0x2016051100162800n);
  w.u32(f.selection.length);
  for (const s of f.selection) {
    const bitmap = new Uint8Array(3);
    for (const i of s.pcrs) bitmap[i >> 3] |= 1 << (i & 7);
    w.u16(s.hashAlg).u8(3).bytes(bitmap);
  }
  return w.tpm2b(f.pcrDigest).done();
}

const hashName: Record<number, string> = { [ALG.SHA1]: "sha1", [ALG.SHA256]: "sha256", [ALG.SHA384]: "sha384" };

/** signQuote signs `data` with the AK and writes the TPMT_SIGNATURE (sigAlg/hashAlg override the AK's). */
export function signQuote(ak: TestAK, data: Uint8Array, over: { sigAlg?: number; hashAlg?: number; key?: KeyObject } = {}): Uint8Array {
  const sigAlg = over.sigAlg ?? ak.sigAlg;
  const hashAlg = over.hashAlg ?? ak.hashAlg;
  const key = over.key ?? ak.privateKey;
  const w = new Writer().u16(sigAlg).u16(hashAlg);
  if (sigAlg === ALG.ECDSA) {
    const rs = sign(hashName[hashAlg], data, { key, dsaEncoding: "ieee-p1363" });
    const half = rs.length / 2;
    return w.tpm2b(rs.subarray(0, half)).tpm2b(rs.subarray(half)).done();
  }
  const padding = sigAlg === ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
  return w.tpm2b(sign(hashName[hashAlg], data, { key, padding, saltLength: constants.RSA_PSS_SALTLEN_DIGEST })).done();
}

/** digestOf hashes the concatenation of `values` with the TPM hash algorithm `hashAlg`. */
export function digestOf(values: Uint8Array[], hashAlg: number = ALG.SHA256): Uint8Array {
  const h = createHash(hashName[hashAlg]);
  for (const v of values) h.update(v);
  return new Uint8Array(h.digest());
}

/** pcrValues makes deterministic, distinct PCR values for `indices` (11 and 12 zero: a fresh peer). */
export function pcrValues(indices: number[]): Map<number, Uint8Array> {
  return new Map(indices.map((i) => [i, i === 11 || i === 12 ? new Uint8Array(32) : digestOf([Uint8Array.of(i)])]));
}

/** DocumentParts are the decoded fields of a `tpm` attestation document. */
export interface DocumentParts {
  akPublic: Uint8Array;
  quote: Uint8Array;
  signature: Uint8Array;
  pcrs: Map<number, Uint8Array>;
  userData: Uint8Array;
  /** akCertChain is what vouches for the AK on GCE and a simulated TPM: [AK certificate DER, intermediates…]. */
  akCertChain?: Uint8Array[];
  /** hcl is what vouches for the AK on Azure: the HCL report, its SNP report's VCEK and [ASK, ARK]. */
  hcl?: { hclReport: Uint8Array; vcek: Uint8Array; certChain: Uint8Array[] };
}

/** encodeDocument renders parts as the DESIGN.md JSON (its own encoder, independent of src/). */
export function encodeDocument(p: DocumentParts): Uint8Array {
  const sha256: Record<string, string> = {};
  for (const [i, v] of p.pcrs) sha256[String(i)] = Buffer.from(v).toString("hex");
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  return Buffer.from(JSON.stringify({
    akPublic: b64(p.akPublic), quote: b64(p.quote), signature: b64(p.signature), pcrs: { sha256 }, userData: b64(p.userData),
    ...(p.akCertChain ? { akCertChain: p.akCertChain.map(b64) } : {}),
    ...(p.hcl ? { hclReport: b64(p.hcl.hclReport), vcek: b64(p.hcl.vcek), certChain: p.hcl.certChain.map(b64) } : {}),
  }));
}

/** BuildOptions describe one piece of evidence; `quote` overrides fields of the signed TPMS_ATTEST. */
export interface BuildOptions {
  ak: TestAK;
  nonce: Uint8Array;
  userData: Uint8Array;
  /** pcrs listed in the document and quoted (default 0-23 from pcrValues). */
  pcrs?: Map<number, Uint8Array>;
  quote?: Partial<QuoteFields>;
  sign?: { sigAlg?: number; hashAlg?: number; key?: KeyObject };
  /** akCertChain is carried as given (see testAKCertChain); absent: nothing vouches for the AK. */
  akCertChain?: Uint8Array[];
}

/** buildEvidence makes a quote over `pcrs` bound to nonce and userData, signs it, and returns the document parts. */
export function buildEvidence(o: BuildOptions): DocumentParts {
  const pcrs = o.pcrs ?? pcrValues([...Array(24).keys()]);
  const indices = [...pcrs.keys()].sort((a, b) => a - b);
  const quote = marshalQuote({
    extraData: digestOf([o.nonce, o.userData]),
    selection: [{ hashAlg: ALG.SHA256, pcrs: indices }],
    pcrDigest: digestOf(indices.map((i) => pcrs.get(i)!), o.sign?.hashAlg ?? o.ak.hashAlg),
    ...o.quote,
  });
  return { akPublic: o.ak.tpm2bPublic, quote, signature: signQuote(o.ak, quote, o.sign), pcrs: new Map(pcrs), userData: o.userData, ...(o.akCertChain ? { akCertChain: o.akCertChain } : {}) };
}

/** gceDir is the real GCE vTPM evidence (../shared/evidence/tpm/gce-cos85 from the project root). */
export const gceDir = new URL("../../../shared/evidence/tpm/gce-cos85/", import.meta.url);

/** GCEEvidence is the real quote from a GCE Shielded VM (see the evidence README). */
export interface GCEEvidence {
  /** akTPMTPublic is the AK as a TPMT_PUBLIC (no size prefix), akPublic the TPM2B_PUBLIC made from it. */
  akTPMTPublic: Uint8Array;
  akPublic: Uint8Array;
  akPEM: string;
  quote: Uint8Array;
  signature: Uint8Array;
  /** pcrs are PCR 0-23 of the SHA-256 bank from quote1_sha256_pcrs.bin. */
  pcrs: Map<number, Uint8Array>;
  /** pcrsText are the same values from quote1_sha256_pcrs.txt. */
  pcrsText: Map<number, Uint8Array>;
  eventLog: Uint8Array;
  expected: { attest: { qualifiedSigner: string; extraData: string; clock: number; resetCount: number; restartCount: number; safe: number; firmwareVersion: string; pcrDigest: string } };
}

/** loadGCEEvidence reads the GCE evidence files. */
export async function loadGCEEvidence(): Promise<GCEEvidence> {
  const { readFile } = await import("node:fs/promises");
  const read = async (name: string) => new Uint8Array(await readFile(new URL(name, gceDir)));
  const akTPMTPublic = await read("ak_pub_tpmt_public.bin");
  const pcrBin = await read("quote1_sha256_pcrs.bin");
  const pcrs = new Map([...Array(24).keys()].map((i) => [i, pcrBin.slice(i * 32, i * 32 + 32)]));
  const text = Buffer.from(await read("quote1_sha256_pcrs.txt")).toString("utf8");
  const pcrsText = new Map(
    text
      .trim()
      .split("\n")
      .map((l) => /^(\d+): ([0-9a-f]{64})$/.exec(l.trim())!)
      .map((m) => [Number(m[1]), new Uint8Array(Buffer.from(m[2], "hex"))] as const),
  );
  return {
    akTPMTPublic,
    akPublic: new Writer().tpm2b(akTPMTPublic).done(),
    akPEM: Buffer.from(await read("ak_pub.pem")).toString("utf8"),
    quote: await read("quote1_sha256_attest.bin"),
    signature: await read("quote1_sha256_sig_tpmt.bin"),
    pcrs,
    pcrsText,
    eventLog: await read("tcg_event_log.bin"),
    expected: JSON.parse(Buffer.from(await read("quote1_sha256_expected.json")).toString("utf8")),
  };
}

/**
 * testAKCertChain certifies `ak`'s key with the project's simulated-TPM test CA (what a provisioned
 * swtpm's NV holds), or with `signer`/`issuer` to make a self-made certificate.
 */
export function testAKCertChain(ak: TestAK | KeyObject, o: { signer?: KeyObject; issuer?: Uint8Array; notAfter?: Date } = {}): Uint8Array[] {
  const key = "publicKey" in ak ? ak.publicKey : ak;
  return [
    buildCertificate({
      issuer: o.issuer ?? tpmTestCASubject(),
      subject: nameDER("software AK"),
      spki: key.export({ type: "spki", format: "der" }),
      serial: Uint8Array.of(0x11),
      notBefore: new Date("2025-01-01T00:00:00Z"),
      notAfter: o.notAfter ?? new Date("2125-01-01T00:00:00Z"),
      ca: false,
      signer: o.signer ?? tpmTestCAKey(),
    }),
  ];
}

/** builderPolicy pins PCRs 0-10 of `pcrs` and allows the test root: a policy tests can satisfy with pcrValues(). */
export function builderPolicy(pcrs: Map<number, Uint8Array> = pcrValues([...Array(24).keys()]), indices: number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]): MeasurementPolicy {
  return { tpm: { pcrs: new Map(indices.map((i) => [i, Buffer.from(pcrs.get(i)!).toString("hex")])), allowTestRoot: true } };
}

/**
 * forgedTPMIssuer is the hostile host of finding 1 (issue 10): a software P-256 key with the
 * restricted-signing bits signs quotes bound to each handshake, listing PCRs 0-23 of pcrValues()
 * (11/12 zero: "fresh"), with no AK certificate or a self-made one claiming Google's name.
 */
export function forgedTPMIssuer(chain: "none" | "self-made"): Issuer {
  const ak = makeAK("ecc-p256");
  const ca = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    platform: "tpm",
    oid: platformOIDs.tpm,
    issue: async (nonce, userData) =>
      encodeDocument(buildEvidence({
        ak, nonce, userData, pcrs: pcrValues([...Array(24).keys()]),
        ...(chain === "self-made" ? { akCertChain: testAKCertChain(ak, { signer: ca.privateKey, issuer: nameDER("Google EK/AK CA") }) } : {}),
      })),
  };
}
