import { createHash, randomBytes } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { openTPM, type TPMIssuer } from "../../src/attestation/tpm-issuer.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { startSwtpm, swtpmPolicy, type Swtpm } from "../helpers/swtpm.js";

/**
 * The two halves meet: documents our TPM issuer (native addon over swtpm) serves verify with our
 * validator, for every AK type, and a document is useless on any other connection. A regression
 * here means meshd would refuse its own peers.
 */

process.env.TSS2_LOG ??= "all+none";

const kinds = [
  { type: "ecc", hierarchy: "endorsement" },
  { type: "rsa", hierarchy: "endorsement" },
] as const;

describe("TPM issuer documents verify with the TPM validator", () => {
  let swtpm: Swtpm;
  const issuers: TPMIssuer[] = [];
  beforeAll(async () => {
    swtpm = await startSwtpm({ provision: ["ecc", "rsa"] });
  });
  afterAll(async () => {
    for (const i of issuers) await i.close().catch(() => undefined);
    await swtpm?.stop();
  });

  for (const ak of kinds) {
    it(`${ak.type} AK: every check passes for the handshake it was issued for, nonce binding fails for another`, async () => {
      const issuer = await openTPM(swtpm.tcti, { ak });
      issuers.push(issuer);
      const nonce = randomBytes(32);
      const userData = createHash("sha256").update(randomBytes(64)).digest();
      const doc = await issuer.issue(nonce, userData);
      const validator = createTPMValidator(swtpmPolicy());
      const v = await validator.validate(doc, { nonce, userData, requireFresh: true });
      expect(v.checks.filter((c) => c.status === "failed"), JSON.stringify(v.checks)).toEqual([]);
      expect(v.ok).toBe(true);
      const replay = await validator.validate(doc, { nonce: randomBytes(32), userData });
      expect(replay.checks.filter((c) => c.status === "failed").map((c) => c.name)).toEqual(["nonce binding"]);
      await issuer.close();
      issuers.pop();
    });
  }
});
