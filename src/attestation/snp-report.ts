/**
 * SEV-SNP ATTESTATION_REPORT parsing (AMD SEV-SNP ABI specification, "ATTESTATION_REPORT
 * Structure"). The report is 0x4A0 bytes, little-endian; bytes [0, 0x2A0) are signed with ECDSA
 * P-384 / SHA-384 by the VCEK; the signature's R and S are 72-byte little-endian integers at 0x2A0
 * and 0x2E8. Pure functions, no I/O; safe to call concurrently.
 */

/** SNP_REPORT_SIZE is the size in bytes of an ATTESTATION_REPORT. */
export const SNP_REPORT_SIZE = 0x4a0;
/** SNP_SIGNED_LENGTH is the length of the signed prefix [0, 0x2A0) of a report. */
export const SNP_SIGNED_LENGTH = 0x2a0;
/** SNP_MIN_REPORT_VERSION is the oldest report layout we accept (v2: the layout with reported_tcb and chip_id as used here). */
export const SNP_MIN_REPORT_VERSION = 2;
/** SNP_MAX_REPORT_VERSION is the newest layout we know; a newer one may move fields and is refused. */
export const SNP_MAX_REPORT_VERSION = 5;
/** SNP_POLICY_DEBUG_BIT is the guest policy bit that allows the hypervisor to debug (read) the guest. */
export const SNP_POLICY_DEBUG_BIT = 19;
/** SNP_SIG_ALGO_ECDSA_P384_SHA384 is the report's signature_algo value for ECDSA P-384 with SHA-384. */
export const SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1;
/** SNP_CPUID_FAMILY_TURIN is the CPUID family (0x1A) whose TCB_VERSION layout carries an FMC byte. */
export const SNP_CPUID_FAMILY_TURIN = 0x1a;

const SIG_R = 0x2a0;
const SIG_S = 0x2e8;
const SIG_COMPONENT = 72;
const SIG_END = SIG_S + SIG_COMPONENT;

/**
 * TcbVersion is a decoded TCB_VERSION: the security patch levels of the firmware components.
 * fmc is set only for the Turin layout.
 */
export interface TcbVersion {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

/** FirmwareVersion is a firmware build as major.minor.build. */
export interface FirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

/** SNPReport is a parsed ATTESTATION_REPORT. Byte fields are views into `raw`: copy them to keep them past `raw`'s lifetime. */
export interface SNPReport {
  /** raw is the whole report, SNP_REPORT_SIZE bytes. */
  raw: Uint8Array;
  version: number;
  guestSvn: number;
  /** policy is the 64-bit guest policy; debug mirrors bit SNP_POLICY_DEBUG_BIT. */
  policy: bigint;
  debug: boolean;
  familyId: Uint8Array;
  imageId: Uint8Array;
  vmpl: number;
  signatureAlgo: number;
  /** turin says the TCB fields use the Turin layout (report v3+ with CPUID family 0x1A). */
  turin: boolean;
  currentTcb: TcbVersion;
  platformInfo: bigint;
  /** flags: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2-4 SIGNING_KEY (0 VCEK, 1 VLEK, 7 none). */
  flags: number;
  authorKeyEn: boolean;
  maskChipKey: boolean;
  signingKey: number;
  reportData: Uint8Array;
  measurement: Uint8Array;
  hostData: Uint8Array;
  idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array;
  reportId: Uint8Array;
  reportIdMa: Uint8Array;
  /** reportedTcb is the TCB the VCEK was derived for: the one to compare with the VCEK's extensions. */
  reportedTcb: TcbVersion;
  /** cpuid fields exist from report version 3 on; undefined before. */
  cpuidFamId?: number;
  cpuidModId?: number;
  cpuidStep?: number;
  chipId: Uint8Array;
  committedTcb: TcbVersion;
  currentVersion: FirmwareVersion;
  committedVersion: FirmwareVersion;
  launchTcb: TcbVersion;
  /** signatureR / signatureS are the 72-byte little-endian signature components as stored. */
  signatureR: Uint8Array;
  signatureS: Uint8Array;
}

/** SNPReportError says why bytes are not a report we can parse. */
export class SNPReportError extends Error {}

/** reportVersion reads the version field of a report-sized buffer without parsing the rest. Throws SNPReportError on a wrong size. */
export function reportVersion(bytes: Uint8Array): number {
  if (bytes.length !== SNP_REPORT_SIZE) throw new SNPReportError(`report is ${bytes.length} bytes, want ${SNP_REPORT_SIZE}`);
  return view(bytes).getUint32(0, true);
}

/**
 * parseSNPReport decodes a report. It checks only the size and the version range
 * [SNP_MIN_REPORT_VERSION, SNP_MAX_REPORT_VERSION] (throwing SNPReportError); it verifies nothing.
 */
export function parseSNPReport(bytes: Uint8Array): SNPReport {
  const version = reportVersion(bytes);
  if (version < SNP_MIN_REPORT_VERSION || version > SNP_MAX_REPORT_VERSION) {
    throw new SNPReportError(`report version ${version} not supported (want ${SNP_MIN_REPORT_VERSION}-${SNP_MAX_REPORT_VERSION})`);
  }
  const dv = view(bytes);
  const u8 = (o: number): number => dv.getUint8(o);
  const u32 = (o: number): number => dv.getUint32(o, true);
  const u64 = (o: number): bigint => dv.getBigUint64(o, true);
  const slice = (o: number, n: number): Uint8Array => bytes.subarray(o, o + n);
  const hasCpuid = version >= 3;
  const turin = hasCpuid && u8(0x188) === SNP_CPUID_FAMILY_TURIN;
  const tcb = (o: number): TcbVersion => decodeTcb(slice(o, 8), turin);
  const fw = (o: number): FirmwareVersion => ({ build: u8(o), minor: u8(o + 1), major: u8(o + 2) });
  const policy = u64(0x08);
  const flags = u32(0x48);
  return {
    raw: bytes,
    version,
    guestSvn: u32(0x04),
    policy,
    debug: ((policy >> BigInt(SNP_POLICY_DEBUG_BIT)) & 1n) === 1n,
    familyId: slice(0x10, 16),
    imageId: slice(0x20, 16),
    vmpl: u32(0x30),
    signatureAlgo: u32(0x34),
    turin,
    currentTcb: tcb(0x38),
    platformInfo: u64(0x40),
    flags,
    authorKeyEn: (flags & 1) === 1,
    maskChipKey: (flags & 2) === 2,
    signingKey: (flags >> 2) & 7,
    reportData: slice(0x50, 64),
    measurement: slice(0x90, 48),
    hostData: slice(0xc0, 32),
    idKeyDigest: slice(0xe0, 48),
    authorKeyDigest: slice(0x110, 48),
    reportId: slice(0x140, 32),
    reportIdMa: slice(0x160, 32),
    reportedTcb: tcb(0x180),
    ...(hasCpuid ? { cpuidFamId: u8(0x188), cpuidModId: u8(0x189), cpuidStep: u8(0x18a) } : {}),
    chipId: slice(0x1a0, 64),
    committedTcb: tcb(0x1e0),
    currentVersion: fw(0x1e8),
    committedVersion: fw(0x1ec),
    launchTcb: tcb(0x1f0),
    signatureR: slice(SIG_R, SIG_COMPONENT),
    signatureS: slice(SIG_S, SIG_COMPONENT),
  };
}

/**
 * decodeTcb decodes an 8-byte little-endian TCB_VERSION. Milan/Genoa: byte 0 bootloader, 1 tee,
 * 6 snp, 7 microcode. Turin: 0 fmc, 1 bootloader, 2 tee, 3 snp, 7 microcode.
 */
export function decodeTcb(raw: Uint8Array, turin: boolean): TcbVersion {
  if (raw.length !== 8) throw new SNPReportError(`TCB_VERSION is ${raw.length} bytes, want 8`);
  if (turin) return { fmc: raw[0], bootloader: raw[1], tee: raw[2], snp: raw[3], microcode: raw[7] };
  return { bootloader: raw[0], tee: raw[1], snp: raw[6], microcode: raw[7] };
}

/** encodeTcb is decodeTcb's inverse (reserved bytes zero); `turin` selects the layout as in decodeTcb. */
export function encodeTcb(tcb: TcbVersion, turin: boolean): Uint8Array {
  const out = new Uint8Array(8);
  if (turin) {
    out.set([tcb.fmc ?? 0, tcb.bootloader, tcb.tee, tcb.snp], 0);
  } else {
    out.set([tcb.bootloader, tcb.tee], 0);
    out[6] = tcb.snp;
  }
  out[7] = tcb.microcode;
  return out;
}

/** tcbToString renders a TCB for details and facts: "bootloader=3 tee=0 snp=8 microcode=115" (fmc first when set). */
export function tcbToString(tcb: TcbVersion): string {
  const fmc = tcb.fmc === undefined ? "" : `fmc=${tcb.fmc} `;
  return `${fmc}bootloader=${tcb.bootloader} tee=${tcb.tee} snp=${tcb.snp} microcode=${tcb.microcode}`;
}

/** signedBytes returns the signed prefix [0, 0x2A0) of a report (a view). */
export function signedBytes(report: SNPReport): Uint8Array {
  return report.raw.subarray(0, SNP_SIGNED_LENGTH);
}

/**
 * reportSignatureP1363 converts the stored little-endian R and S into the 96-byte big-endian
 * r‖s form (IEEE P1363) that ECDSA P-384 verifiers take. Returns a string saying what is wrong
 * when a component does not fit in 48 bytes (its upper 24 bytes must be zero).
 */
export function reportSignatureP1363(report: SNPReport): Uint8Array | string {
  const out = new Uint8Array(96);
  for (const [i, le] of [report.signatureR, report.signatureS].entries()) {
    if (le.subarray(48).some((b) => b !== 0)) return `signature ${i === 0 ? "R" : "S"} does not fit in 48 bytes`;
    for (let j = 0; j < 48; j++) out[i * 48 + 47 - j] = le[j]!;
  }
  return out;
}

/**
 * unsignedTailIsZero says whether the reserved bytes after the signature [0x330, 0x4A0) of a
 * report-sized buffer are all zero, as the ABI requires. They are not signed, so a verifier that
 * ignored them would accept altered documents as identical.
 */
export function unsignedTailIsZero(report: Uint8Array): boolean {
  return report.length === SNP_REPORT_SIZE && report.subarray(SIG_END).every((b) => b === 0);
}

/** writeReportSignature stores a 96-byte big-endian r‖s signature into a report buffer as little-endian R and S (zero-padded to 72 bytes). */
export function writeReportSignature(report: Uint8Array, p1363: Uint8Array): void {
  if (report.length !== SNP_REPORT_SIZE || p1363.length !== 96) throw new SNPReportError("writeReportSignature: bad lengths");
  report.fill(0, SIG_R, SIG_END);
  for (let i = 0; i < 2; i++) {
    const base = i === 0 ? SIG_R : SIG_S;
    for (let j = 0; j < 48; j++) report[base + j] = p1363[i * 48 + 47 - j]!;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
