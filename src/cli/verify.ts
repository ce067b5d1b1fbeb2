import type { Verdict } from "../attestation/attestation.js";
import { ATLSError } from "../atls/errors.js";
import { probeEndpoint } from "../atls/probe.js";
import { parseEndpoint } from "../core/validate.js";
import { required, UsageError, type Command, type IO } from "./command.js";
import { pubapiDefaultPort } from "./endpoint.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

/** verify is `meshctl verify`: one aTLS handshake, printing the verified evidence. */
export const verify: Command = {
  name: "verify",
  summary: "attest a peer (aTLS handshake) and print the verified evidence",
  usage: `Usage: meshctl verify --endpoint ENDPOINT --measurements FILE [--json]

Makes one aTLS handshake with the peer at ENDPOINT (HOST[:PORT], port 9000 by default): sends a
fresh nonce, checks the certificate's attestation document (TPM quote or SEV-SNP report) and the
measurement policy, and prints the platform, the root that vouched for the evidence (Google's EK/AK
CA, AMD's ARK, or a test root), every check with its result, and the measured values (PCRs, or the
SNP measurement and TCB). Exit status 0 only when the policy holds.

Options:
  --endpoint ENDPOINT    the peer's pubapi
  --measurements FILE    measurement policy (required; get one with meshctl measurements --from ENDPOINT)
  --json                 print the verdict as JSON`,
  options: { endpoint: { type: "string" }, measurements: { type: "string" }, json: { type: "boolean" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const ep = parseEndpoint(required(v, "endpoint"), "--endpoint", pubapiDefaultPort);
    const validators = await loadValidators(measurementsFlag(v));
    let result;
    try {
      result = await probeEndpoint(ep.host, ep.port, validators);
    } catch (err) {
      // A failed check still shows every check and measured value, then the reason on stderr.
      if (err instanceof ATLSError && err.verdict) {
        if (v.json) io.out(JSON.stringify({ endpoint: `${ep.host}:${ep.port}`, ...err.verdict }, null, 2));
        else printVerdict(err.verdict, io);
      }
      throw err;
    }
    const { verdict, certificate } = result;
    if (v.json) io.out(JSON.stringify({ endpoint: `${ep.host}:${ep.port}`, ...verdict, root: rootOf(verdict), certificate: { subject: certificate.subject, notAfter: certificate.notAfter } }, null, 2));
    else printVerdict(verdict, io);
    return verdict.ok ? 0 : 1;
  },
};

/** printVerdict prints a verdict as an aligned table of checks and facts. */
export function printVerdict(verdict: Verdict, io: IO): void {
  io.out(`platform: ${verdict.platform}`);
  io.out(`result:   ${verdict.ok ? "verified" : "NOT verified"}`);
  const root = rootOf(verdict);
  if (root) io.out(`root:     ${root}`);
  const w = Math.max(...verdict.checks.map((c) => c.name.length), 5);
  for (const c of verdict.checks) io.out(`  ${c.name.padEnd(w)}  ${c.status.padEnd(7)}  ${c.detail ?? ""}`.trimEnd());
  const facts = Object.entries(verdict.facts);
  if (facts.length > 0) {
    io.out("facts:");
    const fw = Math.max(...facts.map(([k]) => k.length));
    for (const [k, val] of facts) io.out(`  ${k.padEnd(fw)}  ${val}`);
  }
}

/**
 * rootOf names the root that vouched for a verdict's evidence: the AK's root for TPM documents
 * (akRoot), the pinned ARK's product line for SEV-SNP; undefined when none was established.
 */
export function rootOf(verdict: Verdict): string | undefined {
  if (verdict.facts.akRoot) return `${verdict.facts.akRoot}${verdict.facts.akTestRoot === "true" ? " — A TEST ROOT: proves nothing about hardware" : ""}`;
  const chain = verdict.checks.find((c) => c.name === "cert chain");
  if (verdict.platform === "snp" && chain?.status === "passed" && verdict.facts.product) {
    return /test root/.test(verdict.facts.product) ? "a simulated SEV-SNP secure processor's test root — A TEST ROOT: proves nothing about hardware" : `AMD SEV-SNP ARK ${verdict.facts.product}`;
  }
  return undefined;
}
