/**
 * AK certificate chains (DESIGN.md "Attested TLS", document `tpm`, field `akCertChain`): the AK
 * certificate must certify exactly the quote's AK and chain, through intermediates from the
 * document or shipped with us (tpm-ak-roots.ts), to a pinned root. Each link: names match byte for
 * byte, the signature verifies with an accepted algorithm (RSA PKCS#1 v1.5 or PSS with SHA-256/384/512,
 * ECDSA with SHA-256/384/512) and key (RSA ≥ 2048, EC P-256/384/521), every certificate is valid at
 * `now`, issuers are CAs (basicConstraints CA, keyUsage keyCertSign, pathLen respected), the AK
 * certificate is not a CA and, when it has keyUsage, allows digitalSignature. The bounds-checked DER
 * reader of snp-certs.ts parses; node crypto does the signature arithmetic. Pure; safe concurrently.
 */
import { X509Certificate, type KeyObject } from "node:crypto";

import * as der from "../atls/der.js";
import { parseCertificate, type SNPCertificate } from "./snp-certs.js";
import type { AKRoot } from "./tpm-ak-roots.js";

/** MAX_AK_CHAIN_DEPTH bounds the intermediates between an AK certificate and its root. */
export const MAX_AK_CHAIN_DEPTH = 4;

/** AKChainResult says whether the chain holds, why, and the root that vouched. */
export interface AKChainResult {
  ok: boolean;
  detail: string;
  root?: AKRoot;
}

/** AKChainOptions: the roots to accept and those to recognise only for a clearer refusal. */
export interface AKChainOptions {
  roots: readonly AKRoot[];
  /** refusedRoots are known roots the policy does not allow (the test CA without allowTestRoot). */
  refusedRoots?: readonly AKRoot[];
  /** intermediates (PEM or DER) are tried after the document's own. */
  intermediates?: readonly (string | Uint8Array)[];
  now: Date;
}

interface Cert {
  x509: X509Certificate;
  parsed: SNPCertificate;
  label: string;
}

class ChainError extends Error {}

function load(bytes: string | Uint8Array, label: string): Cert {
  const derBytes = typeof bytes === "string" ? Buffer.from(bytes.replace(/-----[A-Z ]+-----|\s/g, ""), "base64") : bytes;
  let parsed: SNPCertificate;
  try {
    parsed = parseCertificate(derBytes, label);
  } catch (err) {
    throw new ChainError((err as Error).message);
  }
  try {
    return { x509: new X509Certificate(Buffer.from(derBytes)), parsed, label };
  } catch (err) {
    throw new ChainError(`${label}: not a certificate node can read: ${(err as Error).message}`);
  }
}

function commonName(c: Cert, which: "subject" | "issuer"): string {
  const text = c.x509[which];
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(text)?.[1];
  return JSON.stringify(cn ?? (text.replace(/\n/g, ", ") || "(empty name)"));
}

const hashOIDs = new Set(["2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2", "2.16.840.1.101.3.4.2.3"]);
const rsaPKCS1 = new Set(["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"]);
const ecdsa = new Set(["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]);
const rsaPSS = "1.2.840.113549.1.1.10";

/** signatureAlgorithmProblem returns why a certificate's signature algorithm is refused, or undefined. */
function signatureAlgorithmProblem(c: Cert): string | undefined {
  try {
    const alg = der.readElement(Buffer.from(c.parsed.signatureAlgorithm), 0, "signatureAlgorithm");
    const [id, params] = der.children(alg, "signatureAlgorithm");
    if (!id || id.tag !== der.Tag.oid) return "signature algorithm has no OID";
    const o = der.decodeOID(id.content);
    if (rsaPKCS1.has(o) || ecdsa.has(o)) return undefined;
    if (o === rsaPSS) {
      // RSASSA-PSS-params: the hash defaults to SHA-1 when absent, which is refused.
      const fields = params && params.tag === der.Tag.sequence ? der.children(params, "RSASSA-PSS-params") : [];
      const hash = fields.find((f) => f.tag === 0xa0);
      const inner = hash ? der.children(hash, "PSS hash")[0] : undefined;
      const hashAlg = inner ? der.children(inner, "PSS hash")[0] : undefined;
      if (hashAlg?.tag === der.Tag.oid && hashOIDs.has(der.decodeOID(hashAlg.content))) return undefined;
      return "RSASSA-PSS with a hash other than SHA-256/384/512";
    }
    return `signature algorithm ${o} is not accepted (want RSA PKCS#1 v1.5 or PSS, or ECDSA, with SHA-256/384/512)`;
  } catch (err) {
    return `signature algorithm unreadable: ${(err as Error).message}`;
  }
}

/** keyProblem returns why an issuer key is too weak or of an unknown kind, or undefined. */
function keyProblem(key: KeyObject): string | undefined {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa" || key.asymmetricKeyType === "rsa-pss") {
    return (d.modulusLength ?? 0) >= 2048 ? undefined : `RSA key of ${d.modulusLength} bits is too weak`;
  }
  if (key.asymmetricKeyType === "ec") return ["prime256v1", "secp384r1", "secp521r1"].includes(d.namedCurve ?? "") ? undefined : `EC curve ${d.namedCurve} not accepted`;
  return `key type ${key.asymmetricKeyType} not accepted`;
}

/** signedBy says why `child` is not validly signed by `issuer`, or undefined when it is. */
function signedBy(child: Cert, issuer: Cert): string | undefined {
  if (!Buffer.from(child.parsed.issuer).equals(Buffer.from(issuer.parsed.subject))) return `${child.label}'s issuer is not ${issuer.label}'s subject`;
  const alg = signatureAlgorithmProblem(child);
  if (alg) return `${child.label}: ${alg}`;
  const weak = keyProblem(issuer.x509.publicKey);
  if (weak) return `${issuer.label}: ${weak}`;
  let ok = false;
  try {
    ok = child.x509.verify(issuer.x509.publicKey);
  } catch {
    ok = false;
  }
  return ok ? undefined : `${child.label}'s signature does not verify with ${issuer.label}'s key`;
}

function validAt(c: Cert, now: Date): void {
  if (now < c.parsed.notBefore || now > c.parsed.notAfter) {
    throw new ChainError(`${c.label} ${commonName(c, "subject")} is not valid now (${c.parsed.notBefore.toISOString()} to ${c.parsed.notAfter.toISOString()})`);
  }
}

/** basicConstraints reads 2.5.29.19: whether the certificate is a CA and its pathLen. */
function basicConstraints(c: Cert): { ca: boolean; pathLen?: number } {
  const ext = c.parsed.extensions.get("2.5.29.19");
  if (!ext) return { ca: false };
  const seq = der.readElement(Buffer.from(ext.value), 0, "basicConstraints");
  const fields = der.children(seq, "basicConstraints");
  let i = 0;
  let ca = false;
  if (fields[i]?.tag === der.Tag.boolean) ca = fields[i++].content.some((b) => b !== 0);
  const n = fields[i]?.tag === der.Tag.integer ? fields[i].content : undefined;
  return { ca, ...(n && n.length <= 2 ? { pathLen: n.reduce((a, b) => a * 256 + b, 0) } : {}) };
}

/** keyUsage reads 2.5.29.15 as a 16-bit mask (digitalSignature 0x8000, keyCertSign 0x0400), or undefined. */
function keyUsage(c: Cert): number | undefined {
  const ext = c.parsed.extensions.get("2.5.29.15");
  if (!ext) return undefined;
  const bits = der.readElement(Buffer.from(ext.value), 0, "keyUsage");
  if (bits.tag !== der.Tag.bitString || bits.content.length < 2) throw new ChainError(`${c.label}: malformed keyUsage`);
  return ((bits.content[1] ?? 0) << 8) | (bits.content[2] ?? 0);
}

function checkCA(c: Cert, below: number): void {
  const bc = basicConstraints(c);
  if (!bc.ca) throw new ChainError(`${c.label} ${commonName(c, "subject")} is not a CA (basicConstraints)`);
  if (bc.pathLen !== undefined && below > bc.pathLen) throw new ChainError(`${c.label} ${commonName(c, "subject")}: pathLen ${bc.pathLen} exceeded`);
  const ku = keyUsage(c);
  if (ku === undefined || !(ku & 0x0400)) throw new ChainError(`${c.label} ${commonName(c, "subject")} may not sign certificates (keyUsage keyCertSign)`);
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: "spki", format: "der" });
}

/**
 * verifyAKCertChain checks that `chain` ([AK certificate DER, intermediates DER…]) certifies exactly
 * `ak` and chains to one of options.roots. Never throws; `root` is set when ok.
 */
export function verifyAKCertChain(chain: readonly Uint8Array[], ak: KeyObject, options: AKChainOptions): AKChainResult {
  try {
    if (chain.length === 0) throw new ChainError("no AK certificate");
    const leaf = load(chain[0], "AK certificate");
    validAt(leaf, options.now);
    if (!spki(leaf.x509.publicKey).equals(spki(ak))) throw new ChainError("the AK certificate certifies another key, not the quote's AK");
    if (basicConstraints(leaf).ca) throw new ChainError("the AK certificate is a CA certificate");
    const ku = keyUsage(leaf);
    if (ku !== undefined && !(ku & 0x8000)) throw new ChainError("the AK certificate's keyUsage does not allow digitalSignature");
    const pool = [
      ...chain.slice(1).map((d, i) => load(d, `akCertChain[${i + 1}]`)),
      ...(options.intermediates ?? []).map((d, i) => load(d, `shipped intermediate ${i + 1}`)),
    ];
    const roots = options.roots.map((r) => ({ root: r, cert: load(r.pem, `root ${JSON.stringify(r.name)}`) }));
    const refused = (options.refusedRoots ?? []).map((r) => ({ root: r, cert: load(r.pem, `root ${JSON.stringify(r.name)}`) }));
    let current = leaf;
    const problems: string[] = [];
    for (let depth = 0; depth <= MAX_AK_CHAIN_DEPTH; depth++) {
      for (const r of roots) {
        if (signedBy(current, r.cert) !== undefined) continue;
        checkCA(r.cert, depth);
        validAt(r.cert, options.now);
        return { ok: true, detail: `AK certificate ${depth > 0 ? `via ${depth} intermediate(s) ` : ""}chains to ${r.root.name}`, root: r.root };
      }
      for (const r of refused) {
        if (signedBy(current, r.cert) === undefined) {
          throw new ChainError(`AK certificate chains to ${r.root.name}, which the policy does not trust (it needs tpm.allowTestRoot)`);
        }
      }
      const next = pool.find((c) => c !== current && signedBy(current, c) === undefined);
      if (!next) {
        const near = pool.find((c) => Buffer.from(current.parsed.issuer).equals(Buffer.from(c.parsed.subject)));
        if (near) problems.push(signedBy(current, near)!);
        throw new ChainError(`${current.label}'s issuer ${commonName(current, "issuer")} is no pinned root and no intermediate signs it${problems.length ? ` (${problems.join("; ")})` : ""}`);
      }
      checkCA(next, depth);
      validAt(next, options.now);
      current = next;
    }
    throw new ChainError(`more than ${MAX_AK_CHAIN_DEPTH} intermediates`);
  } catch (err) {
    if (err instanceof ChainError) return { ok: false, detail: err.message };
    return { ok: false, detail: `AK certificate chain: ${(err as Error).message}` };
  }
}
