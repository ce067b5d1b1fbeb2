/**
 * The "ak anchoring" check of the TPM validator (DESIGN.md "Attested TLS", document `tpm`): a quote
 * counts only if a root the policy trusts vouches for its AK. A document's `akCertChain` must
 * certify exactly the AK and chain to Google's EK/AK CA (or, with tpm.allowTestRoot, to the
 * project's simulated-TPM test CA); an `hclReport` must verify as an Azure HCL report under the
 * policy's snp section and hold the AK as HCLAkPub. A document with neither is refused: the
 * attribute bits of an AK the document itself supplies prove nothing (any software key can claim
 * them).
 */
import type { KeyObject } from "node:crypto";

import type { DecodedTPMDocument } from "./document.js";
import type { MeasurementPolicy } from "./policy.js";
import { verifyAKCertChain } from "./tpm-ak-cert.js";
import { GOOGLE_AK_ROOTS, SHIPPED_AK_INTERMEDIATES, type AKRoot } from "./tpm-ak-roots.js";
import { verifyHCLAnchor } from "./tpm-hcl.js";
import { TPM_TEST_CA_CERT_PEM, TPM_TEST_CA_NAME } from "./tpm-test-ca.js";

/** TPM_TEST_AK_ROOT is the simulated TPM's test CA as an AKRoot (accepted only with tpm.allowTestRoot). */
export const TPM_TEST_AK_ROOT: AKRoot = Object.freeze({ name: TPM_TEST_CA_NAME, pem: TPM_TEST_CA_CERT_PEM, test: true });

/** AnchorOptions: the clock and the simulated SNP roots (for an HCL report under snp.allowTestRoot). */
export interface AnchorOptions {
  now?: () => Date;
  snpTestRoots?: readonly Uint8Array[];
}

/** AnchorOutcome is the check's result; `root` names the root that vouched and `test` whether it is a test root. */
export interface AnchorOutcome {
  ok: boolean;
  detail: string;
  root?: string;
  test?: boolean;
}

/** checkAKAnchor runs the anchoring check for `doc`, whose AK key is `ak`, under `policy`. Never throws. */
export async function checkAKAnchor(doc: DecodedTPMDocument, ak: KeyObject, policy: MeasurementPolicy, options: AnchorOptions = {}): Promise<AnchorOutcome> {
  const now = options.now ?? ((): Date => new Date());
  if (doc.akCertChain) {
    const allowTest = policy.tpm?.allowTestRoot === true;
    const r = verifyAKCertChain(doc.akCertChain, ak, {
      roots: allowTest ? [...GOOGLE_AK_ROOTS, TPM_TEST_AK_ROOT] : GOOGLE_AK_ROOTS,
      refusedRoots: allowTest ? [] : [TPM_TEST_AK_ROOT],
      intermediates: SHIPPED_AK_INTERMEDIATES,
      now: now(),
    });
    return r.ok && r.root ? { ok: true, detail: r.detail, root: r.root.name, test: r.root.test } : { ok: false, detail: r.detail };
  }
  if (doc.hcl) {
    const r = await verifyHCLAnchor(doc.hcl, ak, policy.snp, { ...(options.snpTestRoots ? { snpTestRoots: options.snpTestRoots } : {}), now });
    return r.ok ? { ok: true, detail: r.detail, root: r.rootName!, test: r.test === true } : { ok: false, detail: r.detail };
  }
  return {
    ok: false,
    detail: "nothing vouches for the AK (no akCertChain, no hclReport): a key's attribute bits alone prove nothing, any software key can claim them",
  };
}
