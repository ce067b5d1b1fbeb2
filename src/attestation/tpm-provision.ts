/**
 * AK provisioning in TPM NV, the way Google Compute Engine does it (DESIGN.md "Measurement
 * policy"): an AK template (TPMT_PUBLIC) in NV 0x01c10003 (ECC) / 0x01c10001 (RSA) and the AK's
 * certificate in NV 0x01c10002 / 0x01c10000. The issuer creates the AK from the template in the
 * endorsement hierarchy and puts the certificate in every document. provisionSimulatedTpm writes
 * both into a simulated TPM (swtpm) with a certificate from the project's test CA, so tests and the
 * local demo run the same code path as a real GCE vTPM.
 */
import { randomBytes } from "node:crypto";

import type { Tpm } from "./native.js";
import { parseTPM2BPublic } from "./tpm-structures.js";
import { buildCertificate, nameDER, tpmTestCAKey, tpmTestCASubject } from "./tpm-test-ca.js";

/** AK_NV names the NV indices of the AK templates and certificates (GCE's layout). */
export const AK_NV = {
  ecc: { template: 0x01c10003, cert: 0x01c10002 },
  rsa: { template: 0x01c10001, cert: 0x01c10000 },
} as const;

/** AKKind is the key type of an NV-provisioned AK. */
export type AKKind = keyof typeof AK_NV;

/** hexIndex renders an NV index as 0x01c10003. */
export function hexIndex(i: number): string {
  return `0x${i.toString(16).padStart(8, "0")}`;
}

const TPMA = { fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6, restricted: 1 << 16, sign: 1 << 18 };
const akAttributes = TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin | TPMA.userWithAuth | TPMA.restricted | TPMA.sign;

/**
 * simulatedAKTemplate is the TPMT_PUBLIC a simulated TPM's AK is made from: a restricted signing key
 * (fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign), nameAlg SHA-256,
 * ECDSA-P256-SHA256 or RSASSA-2048-SHA256, empty unique: GCE's AK templates have this shape.
 */
export function simulatedAKTemplate(kind: AKKind): Buffer {
  const b = Buffer.alloc(32);
  let o = 0;
  const u16 = (v: number): void => void (o = b.writeUInt16BE(v, o));
  const u32 = (v: number): void => void (o = b.writeUInt32BE(v >>> 0, o));
  u16(kind === "ecc" ? 0x0023 : 0x0001);
  u16(0x000b); // nameAlg SHA-256
  u32(akAttributes);
  u16(0); // authPolicy: empty
  u16(0x0010); // symmetric: NULL
  if (kind === "ecc") {
    u16(0x0018); u16(0x000b); // ECDSA, SHA-256
    u16(0x0003); // NIST P-256
    u16(0x0010); // kdf: NULL
    u16(0); u16(0); // unique: empty x, y
  } else {
    u16(0x0014); u16(0x000b); // RSASSA, SHA-256
    u16(2048);
    u32(0); // exponent: default 65537
    u16(0); // unique: empty modulus
  }
  return b.subarray(0, o);
}

/** ProvisionOptions: which AK kinds to provision (default: ECC only; RSA key generation is slow). */
export interface ProvisionOptions {
  kinds?: readonly AKKind[];
}

/**
 * provisionSimulatedTpm writes, for each kind, the simulated AK template and an AK certificate
 * signed by the project's test CA into `tpm`'s NV, like a GCE vTPM holds them. Idempotent: an index
 * that exists is left alone (a template written before a crash gets its certificate now). Returns
 * the NV indices it wrote. For simulated TPMs only: the certificate is worth nothing outside a
 * policy with tpm.allowTestRoot.
 */
export async function provisionSimulatedTpm(tpm: Tpm, options: ProvisionOptions = {}): Promise<number[]> {
  const written: number[] = [];
  const defined = new Set(await tpm.nvList());
  for (const kind of options.kinds ?? (["ecc"] as const)) {
    const nv = AK_NV[kind];
    if (defined.has(nv.template) && defined.has(nv.cert)) continue;
    if (!defined.has(nv.template)) {
      await tpm.nvDefineWrite(nv.template, simulatedAKTemplate(kind));
      written.push(nv.template);
    }
    if (defined.has(nv.cert)) continue;
    const template = await tpm.nvRead(nv.template);
    const ak = await tpm.createPrimary("endorsement", template);
    let spki: Buffer;
    try {
      spki = parseTPM2BPublic(ak.public).key.export({ type: "spki", format: "der" });
    } finally {
      await tpm.flush(ak.handle);
    }
    const serial = randomBytes(16);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    const cert = buildCertificate({
      issuer: tpmTestCASubject(),
      subject: nameDER(`attested-mesh simulated TPM AK (${kind.toUpperCase()})`),
      spki,
      serial,
      notBefore: new Date("2025-01-01T00:00:00Z"),
      notAfter: new Date("2125-01-01T00:00:00Z"),
      ca: false,
      signer: tpmTestCAKey(),
    });
    await tpm.nvDefineWrite(nv.cert, cert);
    written.push(nv.cert);
  }
  return written;
}

/** ProvisionedAK is what a TPM's NV holds for one AK kind: the template and the certificate DER. */
export interface ProvisionedAK {
  kind: AKKind;
  template: Buffer;
  cert: Buffer;
}

/**
 * readProvisionedAK reads the AK template and certificate from NV: the preferred kind first (ECC
 * unless `prefer` says RSA), then the other. Throws an Error naming the missing NV indices when a
 * TPM has neither pair: its quotes would be vouched for by nothing.
 */
export async function readProvisionedAK(tpm: Tpm, prefer: AKKind = "ecc"): Promise<ProvisionedAK> {
  const defined = new Set(await tpm.nvList());
  const order: AKKind[] = prefer === "rsa" ? ["rsa", "ecc"] : ["ecc", "rsa"];
  for (const kind of order) {
    const nv = AK_NV[kind];
    if (defined.has(nv.template) && defined.has(nv.cert)) {
      return { kind, template: await tpm.nvRead(nv.template), cert: await tpm.nvRead(nv.cert) };
    }
  }
  const missing = order.map((k) => `${k.toUpperCase()}: template ${hexIndex(AK_NV[k].template)}${defined.has(AK_NV[k].template) ? "" : " missing"}, certificate ${hexIndex(AK_NV[k].cert)}${defined.has(AK_NV[k].cert) ? "" : " missing"}`);
  throw new Error(
    `the TPM holds no AK template and certificate in NV (${missing.join("; ")}): nothing would vouch for its quotes. ` +
      "A GCE Shielded VM vTPM has them; a simulated TPM (swtpm) is provisioned by meshd at start (--tpm swtpm:…)",
  );
}
