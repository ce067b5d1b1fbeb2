/**
 * SEV-SNP certificate chain: VCEK → ASK → ARK, every link RSASSA-PSS SHA-384 (MGF1 SHA-384, salt
 * 48), the ARK self-signed and pinned by the SHA-256 of its DER. A small bounds-checked DER reader
 * does the parsing so that AMD's quirks (serial 0, INTEGERs with leading zero bytes) and mutated
 * input never reach a parser that could misbehave; node crypto does the signature arithmetic.
 * Pure functions; safe to call concurrently.
 */
import { constants, createHash, createPublicKey, verify, type KeyObject } from "node:crypto";
import type { TcbVersion } from "./snp-report.js";

/** CertError says what is wrong with a certificate or a chain; messages name the certificate. */
export class CertError extends Error {}

/** SNPCertificate is the part of an X.509 certificate the chain check needs. Byte fields are views into `der`. */
export interface SNPCertificate {
  der: Uint8Array;
  /** tbs is the whole tbsCertificate TLV: the signed bytes. */
  tbs: Uint8Array;
  /** signatureAlgorithm is the outer AlgorithmIdentifier TLV (equal to the one inside tbs). */
  signatureAlgorithm: Uint8Array;
  signature: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** spki is the SubjectPublicKeyInfo TLV. */
  spki: Uint8Array;
  /** extensions by dotted OID: criticality and the extnValue OCTET STRING's content. */
  extensions: Map<string, { critical: boolean; value: Uint8Array }>;
}

/** PinnedRoot names an accepted ARK by the lower-case hex SHA-256 of its DER. */
export interface PinnedRoot {
  product: string;
  arkSha256: string;
}

/** VcekExtensions are AMD's VCEK extensions under 1.3.6.1.4.1.3704.1; absent ones are undefined. */
export interface VcekExtensions {
  productName?: string;
  /** tcb is set only when bootloader, tee, snp and microcode (3.1, 3.2, 3.3, 3.8) are all present; fmc (3.9) when present. */
  tcb?: TcbVersion;
  /** hwId is the chip ID (64 bytes; 8 on Turin), unwrapped from the newer OCTET STRING form when needed. */
  hwId?: Uint8Array;
}

/** SNPChainResult is verifySNPChain's answer; `vcek` is set whenever the VCEK parsed, even when the chain failed. */
export interface SNPChainResult {
  ok: boolean;
  detail: string;
  /** product is the pinned root's product line when the ARK matched a pin. */
  product?: string;
  vcek?: SNPCertificate;
}

/** OID_VCEK is AMD's VCEK extension arc; OIDs below are its members. */
export const OID_VCEK = {
  structVersion: "1.3.6.1.4.1.3704.1.1",
  productName: "1.3.6.1.4.1.3704.1.2",
  blSPL: "1.3.6.1.4.1.3704.1.3.1",
  teeSPL: "1.3.6.1.4.1.3704.1.3.2",
  snpSPL: "1.3.6.1.4.1.3704.1.3.3",
  ucodeSPL: "1.3.6.1.4.1.3704.1.3.8",
  fmcSPL: "1.3.6.1.4.1.3704.1.3.9",
  hwID: "1.3.6.1.4.1.3704.1.4",
} as const;

const OID_RSASSA_PSS = "1.2.840.113549.1.1.10";
const OID_MGF1 = "1.2.840.113549.1.1.8";
const OID_SHA384 = "2.16.840.1.101.3.4.2.2";
const OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const OID_SECP384R1 = "1.3.132.0.34";
const TAG = { bool: 0x01, int: 0x02, bits: 0x03, octets: 0x04, null: 0x05, oid: 0x06, ia5: 0x16, utc: 0x17, gen: 0x18, seq: 0x30 } as const;

/** TLV is one DER element: its tag and where its header and value lie in the buffer. */
interface TLV {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

function readTLV(buf: Uint8Array, off: number, limit: number): TLV {
  if (off + 2 > limit) throw new CertError("DER: truncated header");
  const tag = buf[off];
  if ((tag & 0x1f) === 0x1f) throw new CertError("DER: multi-byte tags not supported");
  let len = buf[off + 1];
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || p + n > limit) throw new CertError("DER: bad length");
    if (buf[p] === 0) throw new CertError("DER: non-minimal length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    if (len < 0x80) throw new CertError("DER: non-minimal length");
  }
  if (p + len > limit) throw new CertError("DER: value runs past its container");
  return { tag, start: off, valueStart: p, end: p + len };
}

function children(buf: Uint8Array, parent: TLV): TLV[] {
  const out: TLV[] = [];
  for (let off = parent.valueStart; off < parent.end; ) {
    const t = readTLV(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

function expect(t: TLV | undefined, tag: number, what: string): TLV {
  if (t === undefined || t.tag !== tag) throw new CertError(`${what}: want tag 0x${tag.toString(16)}, got ${t ? "0x" + t.tag.toString(16) : "nothing"}`);
  return t;
}

function value(buf: Uint8Array, t: TLV): Uint8Array {
  return buf.subarray(t.valueStart, t.end);
}

function oid(buf: Uint8Array, t: TLV): string {
  const v = value(buf, t);
  if (v.length === 0 || v.length > 64 || (v[v.length - 1] & 0x80) !== 0) throw new CertError("DER: bad OID");
  const arcs: number[] = [];
  let acc = 0;
  for (const b of v) {
    if (acc === 0 && b === 0x80) throw new CertError("DER: non-minimal OID arc");
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER / 256) throw new CertError("DER: OID arc too large");
    if ((b & 0x80) === 0) {
      arcs.push(acc);
      acc = 0;
    }
  }
  const first = arcs.shift()!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs].join(".");
}

/** smallInt decodes a non-negative INTEGER up to 2^48, tolerating leading zero bytes (AMD's encoder emits them). */
function smallInt(buf: Uint8Array, t: TLV, what: string): number {
  const v = value(buf, expect(t, TAG.int, what));
  if (v.length === 0 || (v[0] & 0x80) !== 0) throw new CertError(`${what}: not a non-negative INTEGER`);
  let n = 0;
  for (const b of v) {
    n = n * 256 + b;
    if (n > 2 ** 48) throw new CertError(`${what}: INTEGER too large`);
  }
  return n;
}

function time(buf: Uint8Array, t: TLV, what: string): Date {
  const s = Buffer.from(value(buf, t)).toString("latin1");
  const m = t.tag === TAG.utc ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === TAG.gen ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) throw new CertError(`${what}: bad time`);
  let year = Number(m[1]);
  if (t.tag === TAG.utc) year += year < 50 ? 2000 : 1900;
  const [month, day, hour, minute, second] = m.slice(2).map(Number) as [number, number, number, number, number];
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls over out-of-range fields (month 13, second 60); a certificate must not.
  if (d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) throw new CertError(`${what}: bad time`);
  return d;
}

/**
 * parseCertificate parses a DER X.509 v3 certificate (exactly: no trailing bytes) far enough to
 * verify it. Throws CertError naming `what` and the problem; never anything else for any input.
 */
export function parseCertificate(der: Uint8Array, what = "certificate"): SNPCertificate {
  try {
    const cert = readTLV(der, 0, der.length);
    if (cert.tag !== TAG.seq || cert.end !== der.length) throw new CertError("not a single DER SEQUENCE");
    const [tbsT, algT, sigT, ...extra] = children(der, cert);
    if (extra.length > 0) throw new CertError("extra fields after the signature");
    const tbs = children(der, expect(tbsT, TAG.seq, "tbsCertificate"));
    let i = 0;
    const ver = expect(tbs[i++], 0xa0, "version");
    const verInner = children(der, ver);
    if (verInner.length !== 1 || smallInt(der, verInner[0], "version") !== 2) throw new CertError("not an X.509 v3 certificate");
    expect(tbs[i++], TAG.int, "serialNumber");
    const innerAlg = expect(tbs[i++], TAG.seq, "signature");
    const issuer = expect(tbs[i++], TAG.seq, "issuer");
    const validity = children(der, expect(tbs[i++], TAG.seq, "validity"));
    const subject = expect(tbs[i++], TAG.seq, "subject");
    const spki = expect(tbs[i++], TAG.seq, "subjectPublicKeyInfo");
    while (tbs[i] && (tbs[i].tag === 0x81 || tbs[i].tag === 0x82 || tbs[i].tag === 0xa1 || tbs[i].tag === 0xa2)) i++;
    const extensions = new Map<string, { critical: boolean; value: Uint8Array }>();
    if (tbs[i]) {
      const wrapper = children(der, expect(tbs[i++], 0xa3, "extensions"));
      if (wrapper.length !== 1) throw new CertError("extensions: want one SEQUENCE");
      for (const ext of children(der, expect(wrapper[0], TAG.seq, "extensions"))) {
        const parts = children(der, expect(ext, TAG.seq, "extension"));
        const id = oid(der, expect(parts[0], TAG.oid, "extnID"));
        let critical = false;
        let vi = 1;
        if (parts[1]?.tag === TAG.bool) critical = value(der, parts[vi++]).some((b) => b !== 0);
        const v = expect(parts[vi], TAG.octets, `extension ${id}`);
        if (parts.length !== vi + 1 || extensions.has(id)) throw new CertError(`extension ${id}: malformed or repeated`);
        extensions.set(id, { critical, value: value(der, v) });
      }
    }
    if (i !== tbs.length) throw new CertError("unexpected fields in tbsCertificate");
    if (validity.length !== 2) throw new CertError("validity: want two times");
    const alg = expect(algT, TAG.seq, "signatureAlgorithm");
    const slice = (t: TLV): Uint8Array => der.subarray(t.start, t.end);
    if (!Buffer.from(slice(alg)).equals(slice(innerAlg))) throw new CertError("signature algorithms inside and outside tbsCertificate differ");
    const sigBits = value(der, expect(sigT, TAG.bits, "signatureValue"));
    if (sigBits.length < 2 || sigBits[0] !== 0) throw new CertError("signatureValue: bad BIT STRING");
    return {
      der,
      tbs: slice(tbsT),
      signatureAlgorithm: slice(alg),
      signature: sigBits.subarray(1),
      issuer: slice(issuer),
      subject: slice(subject),
      notBefore: time(der, validity[0], "notBefore"),
      notAfter: time(der, validity[1], "notAfter"),
      spki: slice(spki),
      extensions,
    };
  } catch (err) {
    if (err instanceof CertError) throw new CertError(`${what}: ${err.message}`);
    throw new CertError(`${what}: ${String(err)}`);
  }
}

/** checkPSSAlgorithm throws CertError unless `alg` (an AlgorithmIdentifier TLV) is RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1. */
export function checkPSSAlgorithm(alg: Uint8Array): void {
  const root = readTLV(alg, 0, alg.length);
  const [id, params, ...rest] = children(alg, expect(root, TAG.seq, "AlgorithmIdentifier"));
  if (oid(alg, expect(id, TAG.oid, "algorithm")) !== OID_RSASSA_PSS || rest.length > 0) throw new CertError("signature algorithm is not RSASSA-PSS");
  const p = children(alg, expect(params, TAG.seq, "RSASSA-PSS-params"));
  const hashAlg = (t: TLV | undefined, what: string): void => {
    const [h, n, ...more] = children(alg, expect(t, TAG.seq, what));
    if (oid(alg, expect(h, TAG.oid, what)) !== OID_SHA384 || more.length > 0 || (n && (n.tag !== TAG.null || n.end !== n.valueStart))) {
      throw new CertError(`${what} is not SHA-384`);
    }
  };
  const explicit = (t: TLV | undefined, tag: number, what: string): TLV => {
    const inner = children(alg, expect(t, tag, what));
    if (inner.length !== 1) throw new CertError(`${what}: malformed`);
    return inner[0];
  };
  hashAlg(explicit(p[0], 0xa0, "PSS hash"), "PSS hash");
  const [mgf, mgfHash, ...more] = children(alg, expect(explicit(p[1], 0xa1, "PSS MGF"), TAG.seq, "PSS MGF"));
  if (oid(alg, expect(mgf, TAG.oid, "PSS MGF")) !== OID_MGF1 || more.length > 0) throw new CertError("PSS MGF is not MGF1");
  hashAlg(mgfHash, "PSS MGF1 hash");
  if (smallInt(alg, explicit(p[2], 0xa2, "PSS salt"), "PSS salt") !== 48) throw new CertError("PSS salt length is not 48");
  if (p.length === 4 && smallInt(alg, explicit(p[3], 0xa3, "PSS trailer"), "PSS trailer") !== 1) throw new CertError("PSS trailer is not 1");
  if (p.length > 4) throw new CertError("RSASSA-PSS-params: extra fields");
}

const verifyMemo = new Map<string, boolean>();
const VERIFY_MEMO_MAX = 4096;

/**
 * verifySignedBy says whether `cert` carries a valid RSASSA-PSS SHA-384 (salt 48) signature by the
 * RSA key in `issuerSpki`. Results are memoized by the SHA-256 of every input to the verification
 * (algorithm, signed bytes, signature, key), so a cached answer is only ever reused for identical bytes.
 */
export function verifySignedBy(cert: SNPCertificate, issuerSpki: Uint8Array): boolean {
  checkPSSAlgorithm(cert.signatureAlgorithm);
  const h = createHash("sha256");
  for (const part of [cert.signatureAlgorithm, cert.tbs, cert.signature, issuerSpki]) h.update(String(part.length) + ":").update(part);
  const key = h.digest("hex");
  const cached = verifyMemo.get(key);
  if (cached !== undefined) return cached;
  const pub = publicKey(issuerSpki, "issuer");
  if (pub.asymmetricKeyType !== "rsa" && pub.asymmetricKeyType !== "rsa-pss") throw new CertError("issuer key is not RSA");
  let ok: boolean;
  try {
    ok = verify("sha384", cert.tbs, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, cert.signature);
  } catch {
    ok = false;
  }
  if (verifyMemo.size >= VERIFY_MEMO_MAX) verifyMemo.delete(verifyMemo.keys().next().value!);
  verifyMemo.set(key, ok);
  return ok;
}

/** publicKey imports a SubjectPublicKeyInfo; throws CertError naming `what` when node cannot. */
function publicKey(spki: Uint8Array, what: string): KeyObject {
  try {
    return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (err) {
    throw new CertError(`${what}: public key not importable: ${(err as Error).message}`);
  }
}

/** vcekPublicKey returns the VCEK's key, checking that it is an EC P-384 key (by OID and by node's import). */
export function vcekPublicKey(vcek: SNPCertificate): KeyObject {
  const spki = readTLV(vcek.spki, 0, vcek.spki.length);
  const [alg] = children(vcek.spki, spki);
  const [kind, curve] = children(vcek.spki, expect(alg, TAG.seq, "VCEK key algorithm"));
  if (oid(vcek.spki, expect(kind, TAG.oid, "VCEK key")) !== OID_EC_PUBLIC_KEY || oid(vcek.spki, expect(curve, TAG.oid, "VCEK curve")) !== OID_SECP384R1) {
    throw new CertError("VCEK key is not EC P-384");
  }
  const key = publicKey(vcek.spki, "VCEK");
  if (key.asymmetricKeyDetails?.namedCurve !== "secp384r1") throw new CertError("VCEK key is not EC P-384");
  return key;
}

/** sha256Hex is the lower-case hex SHA-256 of bytes (certificate fingerprints). */
export function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/**
 * verifySNPChain checks VCEK → ASK → ARK: the ARK is one of `roots` (by fingerprint) and
 * self-signed; each link's issuer name matches and its PSS signature verifies; all three are
 * valid at `now`; the VCEK key is P-384. Never throws; `detail` names the failing link.
 */
export function verifySNPChain(der: { vcek: Uint8Array; ask: Uint8Array; ark: Uint8Array }, roots: readonly PinnedRoot[], now: Date): SNPChainResult {
  let vcek: SNPCertificate | undefined;
  try {
    vcek = parseCertificate(der.vcek, "VCEK");
    const ask = parseCertificate(der.ask, "ASK");
    const ark = parseCertificate(der.ark, "ARK");
    const fp = sha256Hex(ark.der);
    const root = roots.find((r) => r.arkSha256 === fp);
    if (!root) return { ok: false, detail: `ARK sha256 ${fp.slice(0, 16)}… is not a pinned root`, vcek };
    const links: [SNPCertificate, SNPCertificate, string][] = [
      [ark, ark, "ARK is not self-signed"],
      [ask, ark, "ASK is not signed by the ARK"],
      [vcek, ask, "VCEK is not signed by the ASK"],
    ];
    for (const [child, issuer, failure] of links) {
      if (!Buffer.from(child.issuer).equals(issuer.subject) || !verifySignedBy(child, issuer.spki)) return { ok: false, detail: failure, product: root.product, vcek };
    }
    for (const [c, name] of [[vcek, "VCEK"], [ask, "ASK"], [ark, "ARK"]] as const) {
      if (now < c.notBefore || now > c.notAfter) {
        return { ok: false, detail: `${name} not valid at ${now.toISOString()} (${c.notBefore.toISOString()} to ${c.notAfter.toISOString()})`, product: root.product, vcek };
      }
    }
    vcekPublicKey(vcek);
    return { ok: true, detail: `VCEK → ASK → ARK ${root.product} (pinned)`, product: root.product, vcek };
  } catch (err) {
    return { ok: false, detail: err instanceof CertError ? err.message : `unexpected: ${String(err)}`, ...(vcek ? { vcek } : {}) };
  }
}

/** readVcekExtensions decodes AMD's VCEK extensions. Throws CertError when one is present but malformed. */
export function readVcekExtensions(vcek: SNPCertificate): VcekExtensions {
  const ext = (id: string): Uint8Array | undefined => vcek.extensions.get(id)?.value;
  const spl = (id: string, what: string): number | undefined => {
    const v = ext(id);
    if (v === undefined) return undefined;
    const t = readTLV(v, 0, v.length);
    if (t.end !== v.length) throw new CertError(`VCEK ${what}: trailing bytes`);
    const n = smallInt(v, t, `VCEK ${what}`);
    if (n > 255) throw new CertError(`VCEK ${what}: ${n} does not fit a byte`);
    return n;
  };
  const out: VcekExtensions = {};
  const name = ext(OID_VCEK.productName);
  if (name !== undefined) {
    const t = readTLV(name, 0, name.length);
    if (t.tag !== TAG.ia5 || t.end !== name.length) throw new CertError("VCEK productName: not an IA5String");
    out.productName = Buffer.from(value(name, t)).toString("latin1");
  }
  const [bootloader, tee, snp, microcode, fmc] = [
    spl(OID_VCEK.blSPL, "blSPL"), spl(OID_VCEK.teeSPL, "teeSPL"), spl(OID_VCEK.snpSPL, "snpSPL"), spl(OID_VCEK.ucodeSPL, "ucodeSPL"), spl(OID_VCEK.fmcSPL, "fmcSPL"),
  ];
  if (bootloader !== undefined && tee !== undefined && snp !== undefined && microcode !== undefined) {
    out.tcb = { bootloader, tee, snp, microcode, ...(fmc !== undefined ? { fmc } : {}) };
  }
  const hw = ext(OID_VCEK.hwID);
  if (hw !== undefined) {
    // Older VCEKs put the raw bytes in extnValue; newer ones wrap them in an OCTET STRING. A wrapped
    // form has length 10 or 66, which no raw hwID has, so the two cannot be confused.
    const wrapped = hw.length === 66 || hw.length === 10;
    if (wrapped) {
      const t = readTLV(hw, 0, hw.length);
      if (t.tag !== TAG.octets || t.end !== hw.length) throw new CertError("VCEK hwID: malformed");
      out.hwId = value(hw, t);
    } else if (hw.length === 64 || hw.length === 8) {
      out.hwId = hw;
    } else {
      throw new CertError(`VCEK hwID: ${hw.length} bytes`);
    }
  }
  return out;
}
