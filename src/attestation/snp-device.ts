/**
 * SEV-SNP attestation documents from the real secure processor, through /dev/sev-guest (DESIGN.md
 * "Attested TLS", platform `snp`): `{report, vcek, certChain: [ASK, ARK], userData}` with
 * `report_data = SHA-512(nonce ‖ userData)`.
 *
 * Where the certificates come from: the report itself carries no certificate, so the VCEK, ASK and
 * ARK come either
 *  - from `certDir`, a directory holding them as files the operator fetched from AMD's KDS
 *    (`vcek.der` or `vcek.pem`; `cert_chain.pem` as KDS serves it, ASK then ARK, or `ask.{der,pem}`
 *    and `ark.{der,pem}`), read once on first use; or, without `certDir,
 *  - from the extended report (SNP_GET_EXT_REPORT): the certificate table the host hypervisor
 *    installed for this platform (GHCB spec: 16-byte GUID, u32 offset, u32 length per entry, ending in
 *    an all-zero entry). A host that installed none gives a clear error that names `certDir`.
 * A VLEK-signed report is not supported: the document format carries a VCEK.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { platformOIDs, type Issuer } from "./attestation.js";
import { NativeError, snpGetExtendedReport, snpGetReport } from "./native.js";
import { encodeSNPDocument, snpReportData } from "./snp-validator.js";

/** snpReportSize is the size of an ATTESTATION_REPORT. */
const snpReportSize = 0x4a0;

/** certTableGUIDs are the GHCB certificate-table GUIDs of the AMD certificates. */
export const certTableGUIDs = {
  ark: "c0b406a4-a803-4952-9743-3fb6014cd0ae",
  ask: "4ab7b379-bbac-4fe4-a02f-05aef327c782",
  vcek: "63da758d-e664-4564-adc5-f4b93be8accd",
  vlek: "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
} as const;

/** SNPCertificates are the DER certificates a document carries. */
export interface SNPCertificates {
  vcek: Uint8Array;
  ask: Uint8Array;
  ark: Uint8Array;
}

/** SNPDeviceIssuerOptions configure an SNPDeviceIssuer; every field is optional. */
export interface SNPDeviceIssuerOptions {
  /** device is the sev-guest device node; default /dev/sev-guest. */
  device?: string;
  /** vmpl requested in the report; default 0. */
  vmpl?: number;
  /** certDir holds the VCEK, ASK and ARK files; undefined: take them from the extended report. */
  certDir?: string;
}

function guidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** guidStringMixedEndian reads a GUID stored in the EFI layout (first three fields little-endian). */
function guidStringMixedEndian(b: Uint8Array): string {
  const swapped = Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8, 16)]);
  return guidString(swapped);
}

/**
 * parseCertTable reads a GHCB certificate table into GUID (lower-case string) → certificate bytes.
 * Throws on an entry that points outside the buffer. Both GUID byte orders seen in the wild are
 * recognized for the GUIDs in certTableGUIDs.
 */
export function parseCertTable(table: Uint8Array): Map<string, Uint8Array> {
  const known = new Set<string>(Object.values(certTableGUIDs));
  const view = Buffer.from(table.buffer, table.byteOffset, table.byteLength);
  const out = new Map<string, Uint8Array>();
  for (let at = 0; at + 24 <= view.length; at += 24) {
    const guidBytes = view.subarray(at, at + 16);
    const offset = view.readUInt32LE(at + 16);
    const length = view.readUInt32LE(at + 20);
    if (guidBytes.every((x) => x === 0) && offset === 0 && length === 0) return out;
    if (offset + length > view.length || offset < at + 24) {
      throw new Error(`SEV-SNP certificate table: entry ${at / 24} points at ${offset}+${length}, outside the table`);
    }
    let guid = guidString(guidBytes);
    if (!known.has(guid) && known.has(guidStringMixedEndian(guidBytes))) guid = guidStringMixedEndian(guidBytes);
    out.set(guid, view.subarray(offset, offset + length));
  }
  throw new Error("SEV-SNP certificate table: no terminating all-zero entry");
}

/** certificatesFromTable picks VCEK, ASK and ARK from a certificate table; throws naming what is missing. */
export function certificatesFromTable(table: Uint8Array): SNPCertificates {
  const certs = parseCertTable(table);
  const vcek = certs.get(certTableGUIDs.vcek);
  const ask = certs.get(certTableGUIDs.ask);
  const ark = certs.get(certTableGUIDs.ark);
  if (!vcek || !ask || !ark) {
    const missing = [!vcek && "VCEK", !ask && "ASK", !ark && "ARK"].filter(Boolean).join(", ");
    const vlek = certs.has(certTableGUIDs.vlek) ? " (the host provides a VLEK, which is not supported)" : "";
    throw new Error(`the host's extended report lacks ${missing}${vlek}; fetch them from AMD's KDS into a certificate directory (certDir)`);
  }
  return { vcek: Buffer.from(vcek), ask: Buffer.from(ask), ark: Buffer.from(ark) };
}

const pemBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

async function readFirst(dir: string, names: string[]): Promise<{ name: string; data: Buffer } | undefined> {
  for (const name of names) {
    try {
      return { name, data: await readFile(join(dir, name)) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return undefined;
}

/** derCertificates returns the DER certificates of a file: itself if DER, every PEM block otherwise. */
function derCertificates(file: { name: string; data: Buffer }): Buffer[] {
  const text = file.data.toString("latin1");
  const blocks = text.match(pemBlock);
  const ders = blocks ? blocks.map((b) => new X509Certificate(b).raw) : [new X509Certificate(file.data).raw];
  return ders;
}

/**
 * loadCertDir reads VCEK, ASK and ARK from `dir` (file names in the module comment) as DER. Throws an
 * error naming the directory and the file that is missing or unreadable.
 */
export async function loadCertDir(dir: string): Promise<SNPCertificates> {
  try {
    const vcekFile = await readFirst(dir, ["vcek.der", "vcek.pem", "vcek.crt"]);
    if (!vcekFile) throw new Error("no vcek.der or vcek.pem");
    const vcek = derCertificates(vcekFile)[0];
    const chainFile = await readFirst(dir, ["cert_chain.pem"]);
    if (chainFile) {
      const chain = derCertificates(chainFile);
      if (chain.length !== 2) throw new Error(`cert_chain.pem holds ${chain.length} certificates, want ASK and ARK`);
      return { vcek, ask: chain[0], ark: chain[1] };
    }
    const askFile = await readFirst(dir, ["ask.der", "ask.pem"]);
    const arkFile = await readFirst(dir, ["ark.der", "ark.pem"]);
    if (!askFile || !arkFile) throw new Error("no cert_chain.pem, and no ask.{der,pem} and ark.{der,pem}");
    return { vcek, ask: derCertificates(askFile)[0], ark: derCertificates(arkFile)[0] };
  } catch (cause) {
    throw new Error(`SEV-SNP certificates in ${dir}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * SNPDeviceIssuer issues `snp` documents from /dev/sev-guest. Safe to call concurrently (each issue is
 * one ioctl on its own file descriptor; the driver serializes guest requests).
 */
export class SNPDeviceIssuer implements Issuer {
  /** platform is "snp". */
  readonly platform = "snp";
  /** oid is the SNP document's certificate-extension OID. */
  readonly oid = platformOIDs.snp;
  private readonly device: string;
  private readonly vmpl: number;
  private readonly certDir: string | undefined;
  private dirCerts: Promise<SNPCertificates> | undefined;

  constructor(options: SNPDeviceIssuerOptions = {}) {
    this.device = options.device ?? "/dev/sev-guest";
    this.vmpl = options.vmpl ?? 0;
    if (!Number.isInteger(this.vmpl) || this.vmpl < 0 || this.vmpl > 3) throw new RangeError("SNPDeviceIssuer: vmpl must be 0-3");
    this.certDir = options.certDir;
  }

  /** issue requests a report with report_data = SHA-512(nonce ‖ userData) and attaches the certificates. */
  async issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array> {
    const reportData = snpReportData(nonce, userData);
    const opts = { device: this.device, vmpl: this.vmpl };
    try {
      let report: Uint8Array;
      let certs: SNPCertificates;
      if (this.certDir !== undefined) {
        const dir = this.certDir;
        if (!this.dirCerts) {
          const loading = loadCertDir(dir);
          this.dirCerts = loading;
          loading.catch(() => {
            if (this.dirCerts === loading) this.dirCerts = undefined; // read again next time
          });
        }
        [report, certs] = await Promise.all([snpGetReport(reportData, opts), this.dirCerts]);
      } else {
        const ext = await snpGetExtendedReport(reportData, opts);
        report = ext.report;
        certs = certificatesFromTable(ext.certs);
      }
      if (report.length !== snpReportSize) throw new Error(`the report is ${report.length} bytes, want ${snpReportSize}`);
      return encodeSNPDocument({ report, vcek: certs.vcek, certChain: [certs.ask, certs.ark], userData });
    } catch (cause) {
      const hint =
        cause instanceof NativeError && cause.code === "ENOENT" && cause.call.startsWith("open ")
          ? ` (no SEV-SNP guest device: is this a SEV-SNP VM with the sev-guest driver loaded?)`
          : "";
      throw new Error(`issue SEV-SNP attestation: ${(cause as Error).message}${hint}`, { cause });
    }
  }
}
