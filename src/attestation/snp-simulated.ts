/**
 * A simulated AMD secure processor (DESIGN.md: the embedded default for `--snp simulated`). It makes
 * a test ARK and ASK (RSA, RSASSA-PSS SHA-384 salt 48, as AMD's) and a P-384 VCEK per TCB carrying
 * AMD's TCB and hwID extensions, and signs version-3 (or 2) reports exactly as the real one does.
 * Its root is a test root: validators accept it only when the policy sets snp.allowTestRoot.
 */
import { constants, createHash, createPrivateKey, generateKeyPair, randomBytes, sign, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { platformOIDs, type Issuer } from "./attestation.js";
import { MAX_USER_DATA_BYTES } from "./document.js";
import { OID_VCEK } from "./snp-certs.js";
import { encodeTcb, writeReportSignature, SNP_POLICY_DEBUG_BIT, SNP_REPORT_SIZE, SNP_SIGNED_LENGTH, type TcbVersion } from "./snp-report.js";
import { encodeSNPDocument, snpReportData } from "./snp-validator.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * SIMULATED_SNP_RSA_BITS is the test ARK/ASK modulus size: AMD uses 4096, whose generation takes
 * seconds; the signature scheme (RSASSA-PSS SHA-384, salt 48) is AMD's regardless of the size.
 */
export const SIMULATED_SNP_RSA_BITS = 2048;
/** SIMULATED_SNP_MEASUREMENT is the default launch measurement (hex) of simulated guests: SHA-384("attested-mesh simulated guest"). */
export const SIMULATED_SNP_MEASUREMENT = createHash("sha384").update("attested-mesh simulated guest").digest("hex");
/** SIMULATED_SNP_TCB is the default TCB of the simulated platform (reported, current, committed and launch). */
export const SIMULATED_SNP_TCB: Readonly<TcbVersion> = Object.freeze({ bootloader: 4, tee: 0, snp: 22, microcode: 213 });
/** SIMULATED_SNP_GUEST_POLICY is the default guest policy: SMT allowed (bit 16), reserved bit 17 set, no debug. */
export const SIMULATED_SNP_GUEST_POLICY = 0x30000n;

/** SimulatedSNPChain is a test ARK and ASK with their private keys and the chip's ID. Treat the keys as test secrets. */
export interface SimulatedSNPChain {
  readonly ark: { readonly der: Uint8Array; readonly privateKey: KeyObject };
  readonly ask: { readonly der: Uint8Array; readonly privateKey: KeyObject };
  /** chipId is the simulated chip's 64-byte ID: every report's chip_id and every VCEK's hwID. */
  readonly chipId: Uint8Array;
}

/** SimulatedSNPOptions configures the reports a SimulatedSNPIssuer signs; every field is optional. */
export interface SimulatedSNPOptions {
  /** chain signs the VCEKs; undefined means the per-process chain of simulatedSNPChain(). */
  chain?: SimulatedSNPChain;
  /** measurement is the 48-byte launch measurement, as bytes or 96 hex characters; default SIMULATED_SNP_MEASUREMENT. */
  measurement?: Uint8Array | string;
  /** policy is the 64-bit guest policy; default SIMULATED_SNP_GUEST_POLICY. */
  policy?: bigint;
  /** debug sets the policy's DEBUG bit (19). */
  debug?: boolean;
  /** vmpl is the VMPL the report claims to be requested from (0-3); default 0. */
  vmpl?: number;
  /** tcb is the platform's TCB and the VCEK's TCB; default SIMULATED_SNP_TCB. */
  tcb?: TcbVersion;
  /** version is the report layout, 2 or 3 (3 adds CPUID family/model/stepping); default 3. */
  version?: 2 | 3;
  /** hostData is the 32-byte HOST_DATA; default zeros. */
  hostData?: Uint8Array;
  /**
   * beforeSign may alter the report right before it is signed: a hook for negative tests that need
   * a correctly signed report with wrong content (another chip_id, a misreported TCB, …).
   */
  beforeSign?: (report: Uint8Array) => void;
}

let processChain: Promise<SimulatedSNPChain> | undefined;
const vcekCache = new WeakMap<SimulatedSNPChain, Map<string, Promise<{ der: Uint8Array; privateKey: KeyObject }>>>();

/**
 * simulatedSNPChain returns this process's simulated chain, generating it on first use (RSA key
 * generation takes a while; every later call shares the result). Reject once, retry next call.
 */
export function simulatedSNPChain(): Promise<SimulatedSNPChain> {
  processChain ??= generateSimulatedSNPChain().catch((err: unknown) => {
    processChain = undefined;
    throw new Error("generate simulated SNP chain", { cause: err });
  });
  return processChain;
}

/** generateSimulatedSNPChain makes a fresh, uncached chain (for tests that need a second, distinct root). */
export async function generateSimulatedSNPChain(rsaBits = SIMULATED_SNP_RSA_BITS): Promise<SimulatedSNPChain> {
  const [ark, ask] = await Promise.all([0, 1].map(() => generateKeyPairAsync("rsa", { modulusLength: rsaBits, publicExponent: 0x10001 })));
  const arkName = name("ARK-Simulated");
  const askName = name("SEV-Simulated");
  const ca = [ext("2.5.29.19", true, seq(bool(true))), ext("2.5.29.15", true, tlv(0x03, Uint8Array.of(1, 0x06)))];
  const arkDer = certificate({ issuer: arkName, subject: arkName, key: ark.publicKey, signer: ark.privateKey, years: 25, exts: ca });
  const askDer = certificate({ issuer: arkName, subject: askName, key: ask.publicKey, signer: ark.privateKey, years: 25, exts: ca });
  return { ark: { der: arkDer, privateKey: ark.privateKey }, ask: { der: askDer, privateKey: ask.privateKey }, chipId: randomBytes(64) };
}

/** exportSimulatedSNPChain serializes a chain (certificates and PKCS#8 keys) so that several processes can share one test root. */
export function exportSimulatedSNPChain(chain: SimulatedSNPChain): string {
  const part = (p: SimulatedSNPChain["ark"]): unknown => ({ der: Buffer.from(p.der).toString("base64"), key: p.privateKey.export({ type: "pkcs8", format: "pem" }) });
  return JSON.stringify({ ark: part(chain.ark), ask: part(chain.ask), chipId: Buffer.from(chain.chipId).toString("hex") });
}

/** importSimulatedSNPChain reads exportSimulatedSNPChain's output; throws an Error naming the bad field. */
export function importSimulatedSNPChain(text: string): SimulatedSNPChain {
  const v = JSON.parse(text) as { ark?: { der?: unknown; key?: unknown }; ask?: { der?: unknown; key?: unknown }; chipId?: unknown };
  const part = (p: { der?: unknown; key?: unknown } | undefined, what: string): SimulatedSNPChain["ark"] => {
    if (typeof p?.der !== "string" || typeof p.key !== "string") throw new Error(`simulated SNP chain: ${what} must have der and key`);
    return { der: new Uint8Array(Buffer.from(p.der, "base64")), privateKey: createPrivateKey(p.key) };
  };
  if (typeof v.chipId !== "string" || !/^[0-9a-f]{128}$/.test(v.chipId)) throw new Error("simulated SNP chain: chipId must be 128 hex characters");
  return { ark: part(v.ark, "ark"), ask: part(v.ask, "ask"), chipId: new Uint8Array(Buffer.from(v.chipId, "hex")) };
}

/**
 * SimulatedSNPIssuer implements Issuer for platform "snp" with a simulated secure processor.
 * issue() is safe to call concurrently; the first call may wait for chain generation.
 */
export class SimulatedSNPIssuer implements Issuer {
  readonly platform = "snp";
  readonly oid = platformOIDs.snp;
  readonly #options: SimulatedSNPOptions;
  readonly #measurement: Uint8Array;
  readonly #reportId = randomBytes(32);

  /** Creates an issuer; throws when an option is out of range. No key is generated until first use. */
  constructor(options: SimulatedSNPOptions = {}) {
    const m = options.measurement ?? SIMULATED_SNP_MEASUREMENT;
    this.#measurement = typeof m === "string" ? Buffer.from(m, "hex") : m;
    if (this.#measurement.length !== 48) throw new Error("SimulatedSNPIssuer: measurement must be 48 bytes");
    if (options.vmpl !== undefined && !(Number.isInteger(options.vmpl) && options.vmpl >= 0 && options.vmpl <= 3)) throw new Error("SimulatedSNPIssuer: vmpl must be 0-3");
    if (options.hostData !== undefined && options.hostData.length !== 32) throw new Error("SimulatedSNPIssuer: hostData must be 32 bytes");
    this.#options = { ...options };
  }

  /** testRoot returns the DER ARK this issuer chains to: give it to createSNPValidator's testRoots. */
  async testRoot(): Promise<Uint8Array> {
    return (await this.#chain()).ark.der;
  }

  /** issue returns a JSON document whose report binds report_data = SHA-512(nonce ‖ userData). Throws for userData over MAX_USER_DATA_BYTES. */
  async issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array> {
    if (userData.length > MAX_USER_DATA_BYTES) throw new Error(`SimulatedSNPIssuer: userData is ${userData.length} bytes, at most ${MAX_USER_DATA_BYTES}`);
    const chain = await this.#chain();
    const tcb = this.#options.tcb ?? SIMULATED_SNP_TCB;
    const vcek = await vcekFor(chain, tcb);
    const report = this.#report(snpReportData(nonce, userData), chain.chipId, tcb);
    this.#options.beforeSign?.(report);
    const sig = sign("sha384", report.subarray(0, SNP_SIGNED_LENGTH), { key: vcek.privateKey, dsaEncoding: "ieee-p1363" });
    writeReportSignature(report, sig);
    return encodeSNPDocument({ report, vcek: vcek.der, certChain: [chain.ask.der, chain.ark.der], userData });
  }

  #chain(): Promise<SimulatedSNPChain> {
    return this.#options.chain ? Promise.resolve(this.#options.chain) : simulatedSNPChain();
  }

  #report(reportData: Uint8Array, chipId: Uint8Array, tcb: TcbVersion): Uint8Array {
    const o = this.#options;
    const r = new Uint8Array(SNP_REPORT_SIZE);
    const dv = new DataView(r.buffer);
    const version = o.version ?? 3;
    let policy = o.policy ?? SIMULATED_SNP_GUEST_POLICY;
    if (o.debug) policy |= 1n << BigInt(SNP_POLICY_DEBUG_BIT);
    const t = encodeTcb(tcb, false);
    dv.setUint32(0x00, version, true);
    dv.setBigUint64(0x08, policy, true);
    dv.setUint32(0x30, o.vmpl ?? 0, true);
    dv.setUint32(0x34, 1, true); // ECDSA P-384 with SHA-384
    r.set(t, 0x38); // current_tcb
    dv.setBigUint64(0x40, 1n, true); // platform_info: SMT enabled
    r.set(reportData, 0x50);
    r.set(this.#measurement, 0x90);
    if (o.hostData) r.set(o.hostData, 0xc0);
    r.set(this.#reportId, 0x140);
    r.fill(0xff, 0x160, 0x180); // report_id_ma: no migration agent
    r.set(t, 0x180); // reported_tcb
    if (version >= 3) r.set([0x19, 0x01, 0x01], 0x188); // CPUID family/model/stepping of a Milan part
    r.set(chipId, 0x1a0);
    r.set(t, 0x1e0); // committed_tcb
    r.set([21, 55, 1, 0, 21, 55, 1, 0], 0x1e8); // current and committed firmware 1.55.21
    r.set(t, 0x1f0); // launch_tcb
    return r;
  }
}

function vcekFor(chain: SimulatedSNPChain, tcb: TcbVersion): Promise<{ der: Uint8Array; privateKey: KeyObject }> {
  let byTcb = vcekCache.get(chain);
  if (!byTcb) vcekCache.set(chain, (byTcb = new Map<string, Promise<{ der: Uint8Array; privateKey: KeyObject }>>()));
  const key = JSON.stringify([tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode]);
  let vcek = byTcb.get(key);
  if (!vcek) {
    vcek = (async () => {
      const { publicKey, privateKey } = await generateKeyPairAsync("ec", { namedCurve: "secp384r1" });
      const spl = (oid: string, v: number): Uint8Array => ext(oid, false, int(v));
      const exts = [
        ext(OID_VCEK.structVersion, false, int(0)),
        ext(OID_VCEK.productName, false, tlv(0x16, Buffer.from("Milan-B0"))),
        spl(OID_VCEK.blSPL, tcb.bootloader), spl(OID_VCEK.teeSPL, tcb.tee), spl(OID_VCEK.snpSPL, tcb.snp), spl(OID_VCEK.ucodeSPL, tcb.microcode),
        ext(OID_VCEK.hwID, false, chain.chipId),
      ];
      const der = certificate({ issuer: name("SEV-Simulated"), subject: name("SEV-VCEK"), key: publicKey, signer: chain.ask.privateKey, years: 7, exts });
      return { der, privateKey };
    })();
    vcek.catch(() => byTcb.delete(key));
    byTcb.set(key, vcek);
  }
  return vcek;
}

// A minimal DER writer: enough for the three certificates, with AMD's serial 0 and PSS parameters.
function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Uint8Array.of(tag, ...len), body]);
}
const seq = (...p: Uint8Array[]): Uint8Array => tlv(0x30, ...p);
const bool = (b: boolean): Uint8Array => tlv(0x01, Uint8Array.of(b ? 0xff : 0));
const nul = (): Uint8Array => tlv(0x05);
function int(n: number): Uint8Array {
  const bytes: number[] = [];
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  if (bytes[0] & 0x80) bytes.unshift(0);
  return tlv(0x02, Uint8Array.from(bytes));
}
function oid(dotted: string): Uint8Array {
  const [a, b, ...rest] = dotted.split(".").map(Number);
  const out: number[] = [];
  for (const arc of [a * 40 + b, ...rest]) {
    const enc = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) enc.unshift((v & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Uint8Array.from(out));
}
function time(d: Date): Uint8Array {
  const iso = d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}
function name(cn: string): Uint8Array {
  const rdn = (type: string, v: string): Uint8Array => tlv(0x31, seq(oid(type), tlv(0x0c, Buffer.from(v))));
  return seq(rdn("2.5.4.11", "Engineering"), rdn("2.5.4.10", "attested-mesh simulated AMD SP"), rdn("2.5.4.3", cn));
}
function ext(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return seq(oid(id), ...(critical ? [bool(true)] : []), tlv(0x04, value));
}
const SHA384 = seq(oid("2.16.840.1.101.3.4.2.2"), nul());
const PSS_ALG = seq(oid("1.2.840.113549.1.1.10"), seq(tlv(0xa0, SHA384), tlv(0xa1, seq(oid("1.2.840.113549.1.1.8"), SHA384)), tlv(0xa2, int(48)), tlv(0xa3, int(1))));

function certificate(c: { issuer: Uint8Array; subject: Uint8Array; key: KeyObject; signer: KeyObject; years: number; exts: Uint8Array[] }): Uint8Array {
  const now = Date.now();
  const validity = seq(time(new Date(now - 86_400_000)), time(new Date(now + c.years * 365 * 86_400_000)));
  const spki = c.key.export({ type: "spki", format: "der" });
  const tbs = seq(tlv(0xa0, int(2)), int(0), PSS_ALG, c.issuer, validity, c.subject, spki, tlv(0xa3, seq(...c.exts)));
  const sig = sign("sha384", tbs, { key: c.signer, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
  return new Uint8Array(seq(tbs, PSS_ALG, tlv(0x03, Uint8Array.of(0), sig)));
}
