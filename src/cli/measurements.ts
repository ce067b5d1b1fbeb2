import { writeFile } from "node:fs/promises";

import { policyToJSON } from "../attestation/policy.js";
import { ATLSError } from "../atls/errors.js";
import { probeEndpoint } from "../atls/probe.js";
import { parseEndpoint } from "../core/validate.js";
import { required, UsageError, type Command } from "./command.js";
import { pubapiDefaultPort } from "./endpoint.js";
import { tofuValidators } from "../attestation/validators.js";
import { printVerdict } from "./verify.js";

/**
 * measurements is `meshctl measurements --from ENDPOINT`: trust on first use. One aTLS handshake;
 * the peer's evidence must verify (signature, binding to this handshake, anchored to a root we know)
 * and the policy it shows is printed (or written with --out). PCR 11/12 are never pinned.
 */
export const measurements: Command = {
  name: "measurements",
  summary: "trust on first use: print the measurement policy a peer's verified evidence shows",
  usage: `Usage: meshctl measurements --from ENDPOINT [--out FILE]

Makes one aTLS handshake with the peer at ENDPOINT (HOST[:PORT], port 9000 by default) and verifies
its evidence: the quote or report signature, its binding to this handshake, and that a known root
vouches for it (Google's EK/AK CA or an Azure HCL report for a TPM, AMD's ARK for SEV-SNP, or a
test root of a simulated TPM or secure processor, which is accepted here with a loud warning and
written into the policy as allowTestRoot). It then prints the measurement policy that evidence
shows — PCRs 0-9 of a TPM (never 11/12, the activation markers; never 10, the IMA log), or the
SEV-SNP launch measurement — with the root that vouched, for meshctl activate/add-nodes/verify
--measurements. Trust on first use: run it against a peer you trust to be in its intended state.

Options:
  --from ENDPOINT   the peer to measure
  --out FILE        write the policy there (measurements.json) instead of only printing it`,
  options: { from: { type: "string" }, out: { type: "string" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const ep = parseEndpoint(required(v, "from"), "--from", pubapiDefaultPort);
    const capture = tofuValidators();
    try {
      await probeEndpoint(ep.host, ep.port, capture.validators);
    } catch (err) {
      if (err instanceof ATLSError && err.verdict) printVerdict(err.verdict, io);
      throw err;
    }
    const got = capture.captured();
    if (!got) throw new Error(`${ep.host}:${ep.port}: no policy captured`);
    const text = `${JSON.stringify(policyToJSON(got.policy), null, 2)}\n`;
    io.err(`${ep.host}:${ep.port}: evidence verified; vouched for by ${got.root}`);
    if (got.testRoot) {
      io.err("WARNING: THE ROOT THAT VOUCHED IS A TEST ROOT whose private key is public: this peer runs on a");
      io.err("WARNING: SIMULATED TPM or SECURE PROCESSOR and proves nothing about hardware. The policy sets");
      io.err("WARNING: allowTestRoot; never use it for real machines.");
    }
    if (typeof v.out === "string") {
      await writeFile(v.out, text, { mode: 0o644, flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`${v.out}: ${err.code === "EEXIST" ? "already exists; move it away or choose another --out" : (err.code ?? err.message)}`);
      });
      io.err(`wrote ${v.out}`);
    }
    io.out(text.trimEnd());
    return 0;
  },
};
