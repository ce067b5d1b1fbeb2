/**
 * Parsing of attestation documents (DESIGN.md "Attested TLS"): UTF-8 JSON objects whose binary
 * fields are base64. The shape helpers are strict on purpose — unknown or missing fields, wrong
 * types, non-canonical base64 and oversized input are all DocumentError — so that two verifiers can
 * never read one document differently. Shared by the TPM and SNP validators.
 */

/** MAX_DOCUMENT_BYTES bounds an attestation document (64 KiB); larger input is refused unread. */
export const MAX_DOCUMENT_BYTES = 64 * 1024;

/** DocumentError names the field of an attestation document that is malformed. */
export class DocumentError extends Error {
  /** field is the JSON path of the offending field ("" for the document itself). */
  readonly field: string;

  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(field === "" ? message : `${field}: ${message}`, options);
    this.name = "DocumentError";
    this.field = field;
  }
}

/** JSONObject is a parsed JSON object whose fields are still unchecked. */
export type JSONObject = Record<string, unknown>;

/**
 * parseDocumentObject decodes `bytes` as strict UTF-8 JSON (at most MAX_DOCUMENT_BYTES) and
 * returns the top-level object. Throws DocumentError.
 */
export function parseDocumentObject(bytes: Uint8Array): JSONObject {
  if (!(bytes instanceof Uint8Array)) throw new DocumentError("", "document must be bytes");
  if (bytes.length > MAX_DOCUMENT_BYTES) throw new DocumentError("", `document is ${bytes.length} bytes, more than ${MAX_DOCUMENT_BYTES}`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (cause) {
    throw new DocumentError("", "document is not UTF-8", { cause });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new DocumentError("", `document is not JSON: ${(cause as Error).message}`, { cause });
  }
  const root = objectField(value, "");
  checkNoDuplicateKeys(text);
  return root;
}

/**
 * checkNoDuplicateKeys throws DocumentError when an object in `text` (already known to be valid
 * JSON) names a key twice: JSON.parse keeps the last, other parsers the first, and a verifier must
 * not read a document differently from the tools that check it independently.
 */
function checkNoDuplicateKeys(text: string): void {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  // Strings are whole tokens, so braces and commas inside them are never mistaken for structure.
  for (const [token] of text.matchAll(/[{}[\],]|"(?:[^"\\]|\\.)*"/g)) {
    if (token === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (token === "[") {
      stack.push(null);
    } else if (token === "}" || token === "]") {
      stack.pop();
      expectKey = false;
    } else if (token === ",") {
      expectKey = stack[stack.length - 1] instanceof Set;
    } else {
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const key = JSON.parse(token) as string;
        if (keys.has(key)) throw new DocumentError(key, "duplicate key");
        keys.add(key);
      }
      expectKey = false;
    }
  }
}

/** objectField returns `value` as a plain JSON object or throws DocumentError naming `field`. */
export function objectField(value: unknown, field: string): JSONObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new DocumentError(field, "must be a JSON object");
  return value as JSONObject;
}

/**
 * checkFields throws DocumentError unless `obj` has every name in `required` and nothing outside
 * `required` and `optional`. `where` prefixes field names in messages.
 */
export function checkFields(obj: JSONObject, required: readonly string[], optional: readonly string[] = [], where = ""): void {
  for (const k of Object.keys(obj)) {
    if (!required.includes(k) && !optional.includes(k)) throw new DocumentError(join(where, k), "unknown field");
  }
  for (const k of required) if (!Object.hasOwn(obj, k)) throw new DocumentError(join(where, k), "missing");
}

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * base64Field decodes canonical, padded standard base64 (no whitespace, no URL alphabet, zero
 * unused bits) of `min` to `max` decoded bytes. Throws DocumentError naming `field`.
 */
export function base64Field(value: unknown, field: string, min: number, max: number): Uint8Array {
  if (typeof value !== "string") throw new DocumentError(field, "must be a base64 string");
  if (!base64Pattern.test(value)) throw new DocumentError(field, "not canonical base64");
  const bytes = Buffer.from(value, "base64");
  // Re-encoding catches non-zero unused bits, which would give two spellings of one value.
  if (bytes.toString("base64") !== value) throw new DocumentError(field, "not canonical base64");
  if (bytes.length < min || bytes.length > max) throw new DocumentError(field, `is ${bytes.length} bytes, want ${min}..${max}`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** base64ArrayField decodes an array of `minItems`..`maxItems` base64 strings, each as base64Field. */
export function base64ArrayField(value: unknown, field: string, minItems: number, maxItems: number, min: number, max: number): Uint8Array[] {
  if (!Array.isArray(value)) throw new DocumentError(field, "must be an array");
  if (value.length < minItems || value.length > maxItems) throw new DocumentError(field, `has ${value.length} items, want ${minItems}..${maxItems}`);
  return value.map((v, i) => base64Field(v, `${field}[${i}]`, min, max));
}

/** hexField decodes exactly `size` bytes written as 2·size hex digits (either case). */
export function hexField(value: unknown, field: string, size: number): Uint8Array {
  if (typeof value !== "string" || value.length !== size * 2 || !/^[0-9a-fA-F]*$/.test(value)) {
    throw new DocumentError(field, `must be ${size * 2} hex characters`);
  }
  return new Uint8Array(Buffer.from(value, "hex"));
}

/** DecodedTPMDocument is the `tpm` attestation document with its binary fields decoded (not yet unmarshalled); tpm-issuer.ts has the JSON shape. */
export interface DecodedTPMDocument {
  /** akPublic is the AK's TPM2B_PUBLIC. */
  akPublic: Uint8Array;
  /** quote is the TPMS_ATTEST the AK signed. */
  quote: Uint8Array;
  /** signature is the TPMT_SIGNATURE over quote. */
  signature: Uint8Array;
  /** pcrs are the SHA-256 bank's listed PCR values by index, in ascending index order. */
  pcrs: Map<number, Uint8Array>;
  userData: Uint8Array;
  /** akCertChain is [AK certificate DER, intermediates DER…] (GCE, simulated TPM), when present. */
  akCertChain?: Uint8Array[];
  /** hcl is the Azure HCL report with its SNP report's VCEK and [ASK, ARK], when present. */
  hcl?: { hclReport: Uint8Array; vcek: Uint8Array; certChain: [Uint8Array, Uint8Array] };
}

const tpmFields = ["akPublic", "quote", "signature", "pcrs", "userData"] as const;
const tpmAnchorFields = ["akCertChain", "hclReport", "vcek", "certChain"] as const;
/** MAX_CERT_BYTES bounds one certificate in a document; MAX_AK_CERTS the certificates of akCertChain. */
const MAX_CERT_BYTES = 16 * 1024;
const MAX_AK_CERTS = 4;
/** MAX_HCL_REPORT_BYTES bounds an HCL report (the real ones are 2,600 bytes). */
const MAX_HCL_REPORT_BYTES = 8 * 1024;

/** MAX_USER_DATA_BYTES bounds the userData a document may bind. */
export const MAX_USER_DATA_BYTES = 1024;

/**
 * parseTPMDocument parses a `tpm` attestation document: the fields akPublic, quote, signature
 * (base64), pcrs ({"sha256": {"<0-23>": "<64 hex>"}}) and userData (base64), and what vouches for
 * the AK: akCertChain (1-4 base64 DER certificates) or hclReport + vcek + certChain ([ASK, ARK]),
 * never both; neither is a document the validator refuses at "ak anchoring". Throws
 * DocumentError; the TPM structures inside are checked by tpm-structures.ts.
 */
export function parseTPMDocument(bytes: Uint8Array): DecodedTPMDocument {
  const root = parseDocumentObject(bytes);
  checkFields(root, tpmFields, tpmAnchorFields);
  const akPublic = base64Field(root.akPublic, "akPublic", 4, 4096);
  const quote = base64Field(root.quote, "quote", 4, 4096);
  const signature = base64Field(root.signature, "signature", 4, 4096);
  const userData = base64Field(root.userData, "userData", 0, MAX_USER_DATA_BYTES);
  const banks = objectField(root.pcrs, "pcrs");
  checkFields(banks, ["sha256"], [], "pcrs");
  const bank = objectField(banks.sha256, "pcrs.sha256");
  const indices: number[] = [];
  for (const k of Object.keys(bank)) {
    // Canonical decimal only: "07" and "7" must not both name PCR 7.
    if (!/^(?:0|[1-9][0-9]?)$/.test(k) || Number(k) > 23) throw new DocumentError(`pcrs.sha256.${k}`, "PCR index must be 0-23 in decimal");
    indices.push(Number(k));
  }
  indices.sort((a, b) => a - b);
  const pcrs = new Map<number, Uint8Array>();
  for (const i of indices) pcrs.set(i, hexField(bank[String(i)], `pcrs.sha256.${i}`, 32));
  const doc: DecodedTPMDocument = { akPublic, quote, signature, pcrs, userData };
  const hclFields = ["hclReport", "vcek", "certChain"].filter((k) => Object.hasOwn(root, k));
  if (Object.hasOwn(root, "akCertChain")) {
    if (hclFields.length > 0) throw new DocumentError(hclFields[0], "a document carries either akCertChain or hclReport, not both");
    doc.akCertChain = base64ArrayField(root.akCertChain, "akCertChain", 1, MAX_AK_CERTS, 1, MAX_CERT_BYTES);
  } else if (hclFields.length > 0) {
    for (const k of ["hclReport", "vcek", "certChain"]) if (!Object.hasOwn(root, k)) throw new DocumentError(k, "missing (hclReport comes with vcek and certChain)");
    const [ask, ark] = base64ArrayField(root.certChain, "certChain", 2, 2, 1, MAX_CERT_BYTES) as [Uint8Array, Uint8Array];
    doc.hcl = {
      hclReport: base64Field(root.hclReport, "hclReport", 1, MAX_HCL_REPORT_BYTES),
      vcek: base64Field(root.vcek, "vcek", 1, MAX_CERT_BYTES),
      certChain: [ask, ark],
    };
  }
  return doc;
}

/** encodeTPMDocument renders a DecodedTPMDocument as the UTF-8 JSON that parseTPMDocument accepts. */
export function encodeTPMDocument(doc: DecodedTPMDocument): Uint8Array {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const sha256: Record<string, string> = {};
  for (const [i, v] of [...doc.pcrs].sort((a, b) => a[0] - b[0])) sha256[String(i)] = Buffer.from(v).toString("hex");
  const json = {
    akPublic: b64(doc.akPublic), quote: b64(doc.quote), signature: b64(doc.signature), pcrs: { sha256 }, userData: b64(doc.userData),
    ...(doc.akCertChain ? { akCertChain: doc.akCertChain.map(b64) } : {}),
    ...(doc.hcl ? { hclReport: b64(doc.hcl.hclReport), vcek: b64(doc.hcl.vcek), certChain: doc.hcl.certChain.map(b64) } : {}),
  };
  return new TextEncoder().encode(JSON.stringify(json));
}

function join(where: string, k: string): string {
  return where === "" ? k : `${where}.${k}`;
}
