/**
 * TPM attestation documents (DESIGN.md "Attested TLS", platform `tpm`): a quote by a restricted
 * signing key (the AK) over the SHA-256 PCRs, with `extraData = SHA-256(nonce ‖ userData)`, and the
 * AK's certificate (`akCertChain`). The AK is created from the template in NV and its certificate
 * read from NV, as GCE provisions them (tpm-provision.ts); a TPM without them cannot issue.
 */
import { createHash, X509Certificate } from "node:crypto";

import { platformOIDs, type Issuer } from "./attestation.js";
import { NativeError, Tpm, type AK } from "./native.js";
import { AK_NV, hexIndex, readProvisionedAK, type AKKind, type ProvisionedAK } from "./tpm-provision.js";
import { parseTPM2BPublic, parseTPMSAttest } from "./tpm-structures.js";

/**
 * defaultQuotePCRs is every PCR of the SHA-256 bank, 0-23: the verifier's policy picks what it
 * checks, and it needs at least 11 (owner) and 12 (cluster) for the initialized marker.
 */
export const defaultQuotePCRs: readonly number[] = Array.from({ length: 24 }, (_, i) => i);

/** TPMDocument is the JSON shape of a `tpm` attestation document (binary fields base64). */
export interface TPMDocument {
  /** akPublic is the AK's TPM2B_PUBLIC as the TPM returned it. */
  akPublic: string;
  /** quote is the TPMS_ATTEST (the attestationData of the TPM2B_ATTEST). */
  quote: string;
  /** signature is the TPMT_SIGNATURE over `quote`. */
  signature: string;
  /** pcrs holds the quoted PCR values: {"sha256": {"<index>": "<lower-case hex>"}}. */
  pcrs: { sha256: Record<string, string> };
  userData: string;
  /** akCertChain is [AK certificate DER] as read from NV (base64). */
  akCertChain: string[];
}

/** TPMIssuerOptions configure a TPMIssuer; every field has a default. */
export interface TPMIssuerOptions {
  /** pcrs to quote (SHA-256 bank); must include 11 and 12; default 0-23. */
  pcrs?: readonly number[];
  /** ak.type prefers the ECC (default) or RSA AK of NV; the other is the fallback. */
  ak?: { type?: AKKind };
  /** maxAttempts bounds the quotes tried while PCRs keep changing under the quote; default 3. */
  maxAttempts?: number;
}

/** quoteExtraData is the quote's qualifying data for `nonce` and `userData`: SHA-256(nonce ‖ userData). */
export function quoteExtraData(nonce: Uint8Array, userData: Uint8Array): Buffer {
  return createHash("sha256").update(nonce).update(userData).digest();
}

/** tpmRCObjectMemory is TPM_RC_OBJECT_MEMORY: no free slot for another loaded object. */
const tpmRCObjectMemory = 0x902;

/**
 * createAK creates the AK. A TPM without a resource manager (swtpm) keeps the transient objects of
 * earlier processes that died without flushing; when they fill every slot, they are flushed (this
 * process owns the TPM) and the AK is created again.
 */
async function createAK(tpm: Tpm, template: Uint8Array): Promise<AK> {
  try {
    return await tpm.createPrimary("endorsement", template);
  } catch (err) {
    if (!(err instanceof NativeError) || err.rc !== tpmRCObjectMemory) throw err;
    await tpm.flushTransients();
    return tpm.createPrimary("endorsement", template);
  }
}

/** checkCertifiesAK throws unless the NV certificate's key is the AK made from the NV template. */
function checkCertifiesAK(ak: AK, provisioned: ProvisionedAK): void {
  let certKey: Buffer;
  try {
    certKey = new X509Certificate(provisioned.cert).publicKey.export({ type: "spki", format: "der" });
  } catch (cause) {
    throw new Error(`the AK certificate in NV ${hexIndex(AK_NV[provisioned.kind].cert)} is not a certificate`, { cause });
  }
  if (!certKey.equals(parseTPM2BPublic(ak.public).key.export({ type: "spki", format: "der" }))) {
    throw new Error(`the AK certificate in NV ${hexIndex(AK_NV[provisioned.kind].cert)} certifies another key than the AK made from the template in ${hexIndex(AK_NV[provisioned.kind].template)}`);
  }
}

/**
 * TPMIssuer issues `tpm` documents with one AK created at construction. issue() is safe to call
 * concurrently (the Tpm queues the TPM commands). close() flushes the AK, and closes the Tpm too when
 * the issuer came from openTPM.
 */
export class TPMIssuer implements Issuer {
  /** platform is "tpm". */
  readonly platform = "tpm";
  /** oid is the TPM document's certificate-extension OID. */
  readonly oid = platformOIDs.tpm;

  private constructor(
    /** tpm is the connection the issuer quotes with; a TPMMarker may share it. */
    readonly tpm: Tpm,
    private readonly ak: AK,
    private readonly akCert: Buffer,
    private readonly pcrs: readonly number[],
    private readonly maxAttempts: number,
    private readonly ownsTpm: boolean,
  ) {}

  /**
   * create makes the AK on `tpm` from the AK template in NV (ECC 0x01c10003 first, RSA 0x01c10001 as
   * the fallback, or the other way round with ak.type "rsa"), checks that the AK certificate in NV
   * (0x01c10002 / 0x01c10000) certifies it, and returns an issuer using both. Fails naming the missing
   * NV indices on a TPM without them. The caller keeps owning `tpm` unless `ownsTpm` is set (then
   * close() closes it).
   */
  static async create(tpm: Tpm, options: TPMIssuerOptions = {}, ownsTpm = false): Promise<TPMIssuer> {
    const pcrs = [...new Set(options.pcrs ?? defaultQuotePCRs)].sort((a, b) => a - b);
    if (!pcrs.includes(11) || !pcrs.includes(12)) throw new RangeError("TPMIssuer: pcrs must include 11 and 12");
    if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) throw new RangeError("TPMIssuer: pcrs must be 0-23");
    const maxAttempts = options.maxAttempts ?? 3;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError("TPMIssuer: maxAttempts must be a positive integer");
    let ak: AK;
    let provisioned: ProvisionedAK;
    try {
      provisioned = await readProvisionedAK(tpm, options.ak?.type ?? "ecc");
      ak = await createAK(tpm, provisioned.template);
    } catch (cause) {
      throw new Error(`TPM attestation key: ${(cause as Error).message}`, { cause });
    }
    try {
      checkCertifiesAK(ak, provisioned);
    } catch (cause) {
      await tpm.flush(ak.handle).catch(() => undefined);
      throw new Error(`TPM attestation key: ${(cause as Error).message}`, { cause });
    }
    return new TPMIssuer(tpm, ak, provisioned.cert, pcrs, maxAttempts, ownsTpm);
  }

  /** akPublic is the AK's TPM2B_PUBLIC, as carried in every document. */
  get akPublic(): Buffer {
    return Buffer.from(this.ak.public);
  }

  /**
   * issue quotes the PCRs with extraData = SHA-256(nonce ‖ userData), then reads them; if the values
   * read do not hash to the quote's pcrDigest (a PCR was extended in between) it quotes again, up to
   * maxAttempts times, so the listed PCRs always match the signed digest.
   */
  async issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array> {
    const extraData = quoteExtraData(nonce, userData);
    try {
      for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
        const q = await this.tpm.quote(this.ak.handle, this.pcrs, extraData);
        const values = await this.tpm.pcrRead(this.pcrs);
        const attest = parseTPMSAttest(q.quote);
        if (!Buffer.from(attest.extraData).equals(extraData)) throw new Error("the TPM quoted different extraData than requested");
        if (!attest.quote) throw new Error("the TPM returned an attestation that is not a quote");
        const digest = createHash("sha256");
        for (const p of this.pcrs) digest.update(values.get(p) ?? Buffer.alloc(0));
        if (!digest.digest().equals(attest.quote.pcrDigest)) continue;
        const doc: TPMDocument = {
          akPublic: this.ak.public.toString("base64"),
          quote: q.quote.toString("base64"),
          signature: q.signature.toString("base64"),
          pcrs: { sha256: Object.fromEntries(this.pcrs.map((p) => [String(p), values.get(p)!.toString("hex")])) },
          userData: Buffer.from(userData).toString("base64"),
          akCertChain: [this.akCert.toString("base64")],
        };
        return new TextEncoder().encode(JSON.stringify(doc));
      }
      throw new Error(`PCRs changed during each of ${this.maxAttempts} quotes`);
    } catch (cause) {
      throw new Error(`issue TPM attestation: ${(cause as Error).message}`, { cause });
    }
  }

  /** close flushes the AK and, if the issuer owns its Tpm, closes it. Idempotent for the Tpm. */
  async close(): Promise<void> {
    try {
      await this.tpm.flush(this.ak.handle);
    } finally {
      if (this.ownsTpm) await this.tpm.close();
    }
  }
}

/**
 * openTPM opens the TPM at `tcti` ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=N"), creates the
 * AK and returns an issuer that owns the connection: close() it when done. `issuer.tpm` can back a
 * TPMMarker on the same connection.
 */
export async function openTPM(tcti: string, options: TPMIssuerOptions = {}): Promise<TPMIssuer> {
  const tpm = await Tpm.open(tcti);
  try {
    return await TPMIssuer.create(tpm, options, true);
  } catch (err) {
    await tpm.close().catch(() => undefined);
    throw err;
  }
}
