import { readFile } from "node:fs/promises";
import type { Validator } from "../attestation/attestation.js";
import { platformOIDs } from "../attestation/attestation.js";
import { loadPolicy } from "../attestation/policy.js";
import { UsageError, type Command } from "./command.js";
import { printVerdict } from "./verify.js";
import { validatorsFor } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

const maxDocumentBytes = 1024 * 1024;

/** evidence is `meshctl evidence verify FILE`: offline check of a saved attestation document. */
export const evidence: Command = {
  name: "evidence",
  summary: "verify a saved attestation document offline (evidence verify FILE)",
  usage: `Usage: meshctl evidence verify FILE [--nonce HEX --user-data HEX] --measurements FILE [--json]

Checks a saved attestation document (the JSON of DESIGN.md: a TPM quote or an SEV-SNP report) and
prints every check with its result. Without --nonce/--user-data the binding checks are reported as
skipped, never as passed. Exit status 0 only when every check that ran passed.

Options:
  --nonce HEX          the nonce the document must bind (64 hex characters in aTLS)
  --user-data HEX      the userData it must bind (SHA-256 of the certificate key in aTLS)
  --measurements FILE  measurement policy (required; get one with meshctl measurements --from ENDPOINT)
  --json               print the verdict as JSON`,
  options: { nonce: { type: "string" }, "user-data": { type: "string" }, measurements: { type: "string" }, json: { type: "boolean" } },
  run: async (v, positionals, io) => {
    if (positionals[0] !== "verify" || positionals.length !== 2) throw new UsageError("expected: evidence verify FILE");
    const file = positionals[1];
    const nonce = hexFlag(v.nonce, "--nonce");
    const userData = hexFlag(v["user-data"], "--user-data");
    const policyFile = measurementsFlag(v);
    const doc = await readFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`${file}: ${err.code ?? err.message}`);
    });
    if (doc.length > maxDocumentBytes) throw new Error(`${file}: ${doc.length} bytes is too large for an attestation document`);
    const validators = validatorsFor(await loadPolicy(policyFile));
    // The policy names the platforms it accepts: a document of another platform has no validator.
    const validator = pickValidator(doc, validators, file);
    const verdict = await validator.validate(doc, { ...(nonce ? { nonce } : {}), ...(userData ? { userData } : {}) });
    if (v.json) io.out(JSON.stringify(verdict, null, 2));
    else printVerdict(verdict, io);
    return verdict.ok ? 0 : 1;
  },
};

/** pickValidator chooses the platform from the document's fields: akPublic → tpm, report → snp. */
function pickValidator(doc: Buffer, validators: Validator[], file: string): Validator {
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(doc.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new Error(`${file}: not a JSON attestation document`);
  }
  const oid = "akPublic" in fields ? platformOIDs.tpm : "report" in fields ? platformOIDs.snp : undefined;
  if (!oid) throw new Error(`${file}: unknown document: neither a TPM quote (akPublic) nor an SEV-SNP report (report)`);
  const v = validators.find((x) => x.oid === oid);
  if (!v) throw new Error(`${file}: a ${oid === platformOIDs.tpm ? "tpm" : "snp"} document, but the measurement policy names no ${oid === platformOIDs.tpm ? "tpm" : "snp"} section: refused`);
  return v;
}

function hexFlag(v: string | boolean | undefined, flag: string): Buffer | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^([0-9a-fA-F]{2})+$/.test(v)) throw new UsageError(`${flag} must be hex`);
  return Buffer.from(v, "hex");
}

