import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Binding, Verdict } from "../../src/attestation/attestation.js";
import { parsePolicy, type MeasurementPolicy } from "../../src/attestation/policy.js";
import { parseTPM2BPublic } from "../../src/attestation/tpm-structures.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { buildEvidence, encodeDocument, makeAK, testAKCertChain, type DocumentParts } from "../helpers/tpm-builder.js";
import { startSwtpm, swtpmPolicy, type Swtpm } from "../helpers/swtpm.js";

/**
 * Interoperability with tpm2-tools (DESIGN.md: "the validator must accept evidence produced by
 * tpm2-tools", and tpm2_checkquote must verify what we produce): quotes made by tpm2_quote on a
 * swtpm verify with our validator, and software evidence from our test builder verifies with
 * tpm2_checkquote.
 */

const allPCRs = [...Array(24).keys()];
let tpm: Swtpm;
let dir: string;

/** tool runs a tpm2-tools command against this file's swtpm, in the work dir. */
async function tool(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { cwd: dir, env: { TPM2TOOLS_TCTI: tpm.tcti }, reject: false });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

/**
 * flush frees the swtpm's object and session slots: without a resource manager the transient
 * objects a tool loaded stay loaded after it exits, and swtpm has only three slots.
 */
async function flush(): Promise<void> {
  await tool("tpm2_flushcontext", ["-t"]);
  await tool("tpm2_flushcontext", ["-s"]);
}

interface Quoted {
  parts: DocumentParts;
  nonce: Uint8Array;
}

/** quote runs tpm2_quote over `pcrs` of the SHA-256 bank bound to a fresh nonce, and builds the DESIGN.md document. */
async function quote(ak: AKName, pcrs: number[] = allPCRs, userData: Uint8Array = randomBytes(32)): Promise<Quoted> {
  const nonce = randomBytes(32);
  const extraData = createHash("sha256").update(nonce).update(userData).digest("hex");
  // tpm2_quote signs with RSASSA unless told otherwise, even for an RSAPSS key.
  const scheme = akKinds.find((k) => k.name === ak)!.scheme;
  await tool("tpm2_quote", ["-c", `${ak}.ctx`, "-l", `sha256:${pcrs.join(",")}`, "-q", extraData, "-g", "sha256", "--scheme", scheme, "-m", "quote.msg", "-s", "quote.sig", "-o", "pcrs.ser"]);
  await flush();
  // The serialized PCR file (-F serialized, the default) is what tpm2_checkquote 5.4 reads reliably;
  // the values for our document come from tpm2_pcrread, which nothing extends in between.
  await tool("tpm2_pcrread", ["-o", "pcrs.bin", `sha256:${pcrs.join(",")}`]);
  const values = new Uint8Array(await readFile(join(dir, "pcrs.bin")));
  expect(values.length).toBe(32 * pcrs.length);
  return {
    nonce,
    parts: anchoredByTestCA({
      akPublic: new Uint8Array(await readFile(join(dir, `${ak}.pub`))),
      quote: new Uint8Array(await readFile(join(dir, "quote.msg"))),
      signature: new Uint8Array(await readFile(join(dir, "quote.sig"))),
      pcrs: new Map(pcrs.map((p, i) => [p, values.slice(32 * i, 32 * i + 32)])),
      userData,
    }),
  };
}

/**
 * anchoredByTestCA adds what vouches for a tpm2_createak AK: a certificate from the simulated TPM's
 * test CA (as provisionSimulatedTpm gives the AK meshd makes), accepted under tpm.allowTestRoot.
 */
function anchoredByTestCA(parts: DocumentParts): DocumentParts {
  return { ...parts, akCertChain: testAKCertChain(parseTPM2BPublic(parts.akPublic).key) };
}

/** defaultPolicy is a fresh swtpm's policy (PCRs 0-10 zero) allowing the test CA. */
function defaultPolicy(): MeasurementPolicy {
  return swtpmPolicy();
}

/**
 * checkQuote verifies a quote with an independent tool: tpm2_checkquote, except for RSAPSS, which
 * tpm2_checkquote does not verify (tpm2-software/tpm2-tools#3283, still open in 5.6): there
 * `openssl dgst` checks the raw signature (salt length auto-detected, as TPMs differ).
 */
async function checkQuote(scheme: string, pub: string, pem: string, msg: string, sig: string, extraData: string, pcrs?: string): Promise<void> {
  if (scheme !== "rsapss") {
    await tool("tpm2_checkquote", ["-u", pub, "-m", msg, "-s", sig, "-g", "sha256", "-q", extraData, ...(pcrs ? ["-f", pcrs] : [])]);
    return;
  }
  // TPMT_SIGNATURE for RSAPSS: sigAlg(2) hash(2) size(2) sig.
  await writeFile(join(dir, `${sig}.raw`), (await readFile(join(dir, sig))).subarray(6));
  await tool("openssl", ["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-2", "-verify", pem, "-signature", `${sig}.raw`, msg]);
}

function failed(v: Verdict): string[] {
  return v.checks.filter((c) => c.status === "failed").map((c) => c.name);
}

const akKinds = [
  { name: "rsa", args: ["-G", "rsa", "-s", "rsassa"], scheme: "rsassa" },
  { name: "rsapss", args: ["-G", "rsa", "-s", "rsapss"], scheme: "rsapss" },
  { name: "ecc", args: ["-G", "ecc", "-s", "ecdsa"], scheme: "ecdsa" },
] as const;
type AKName = (typeof akKinds)[number]["name"];

beforeAll(async () => {
  tpm = await startSwtpm();
  dir = await mkdtemp(join(tmpdir(), "tpm-tools-"));
  await tool("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
  await flush();
  for (const k of akKinds) {
    // tpm2_createak makes a restricted signing key (fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign)
    // under the EK; -u writes its TPM2B_PUBLIC.
    await tool("tpm2_createak", ["-C", "ek.ctx", "-c", `${k.name}.ctx`, ...k.args, "-g", "sha256", "-u", `${k.name}.pub`, "-n", `${k.name}.name`]);
    await flush();
    await tool("tpm2_readpublic", ["-c", `${k.name}.ctx`, "-f", "pem", "-o", `${k.name}.pem`]);
    await flush();
  }
});

afterAll(async () => {
  await tpm?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("quotes made by tpm2_quote on swtpm", () => {
  for (const k of akKinds) {
    it(`${k.name} AK: verifies with our validator, bound to nonce and userData, fresh marker unset`, async () => {
      const q = await quote(k.name);
      const binding: Binding = { nonce: q.nonce, userData: q.parts.userData, requireFresh: true };
      const pcr0 = Buffer.from(q.parts.pcrs.get(0)!).toString("hex");
      const policy = parsePolicy({ tpm: { pcrs: { "0": pcr0 }, allowTestRoot: true } });
      const v = await createTPMValidator(policy).validate(encodeDocument(q.parts), binding);
      expect(failed(v), JSON.stringify(v.checks)).toEqual([]);
      expect(v.ok).toBe(true);
      expect(v.checks.every((c) => c.status === "passed")).toBe(true);
      expect(v.facts.pcr0).toBe(pcr0);
    });
  }

  it("a replayed document (nonce of another handshake) fails nonce binding", async () => {
    const q = await quote("ecc");
    const v = await createTPMValidator(defaultPolicy()).validate(encodeDocument(q.parts), { nonce: randomBytes(32), userData: q.parts.userData });
    expect(failed(v)).toEqual(["nonce binding"]);
  });

  it("a subset of PCRs verifies; the fresh marker then fails because PCR 11 and 12 are not quoted", async () => {
    const q = await quote("rsa", [0, 1, 2, 3, 7]);
    const val = createTPMValidator(parsePolicy({ tpm: { pcrs: { "0": "00".repeat(32), "7": "00".repeat(32) }, allowTestRoot: true } }));
    expect((await val.validate(encodeDocument(q.parts), { nonce: q.nonce, userData: q.parts.userData })).ok).toBe(true);
    const v = await val.validate(encodeDocument(q.parts), { nonce: q.nonce, userData: q.parts.userData, requireFresh: true });
    expect(failed(v)).toEqual(["fresh marker"]);
  });

  it("after PCR 11 is extended (peer activated), the fresh marker fails and only it", async () => {
    await tool("tpm2_pcrextend", [`11:sha256=${"ab".repeat(32)}`]);
    const q = await quote("ecc");
    const v = await createTPMValidator(defaultPolicy()).validate(encodeDocument(q.parts), { nonce: q.nonce, userData: q.parts.userData, requireFresh: true });
    expect(failed(v)).toEqual(["fresh marker"]);
    expect(v.checks.find((c) => c.name === "fresh marker")?.detail).toMatch(/PCR 11 is not zero/);
  });

  for (const k of akKinds) {
    it(`${k.name} AK: ${k.scheme === "rsapss" ? "openssl" : "tpm2_checkquote"} agrees with us on the same quote`, async () => {
      const q = await quote(k.name);
      const extraData = createHash("sha256").update(q.nonce).update(q.parts.userData).digest("hex");
      await checkQuote(k.scheme, `${k.name}.pub`, `${k.name}.pem`, "quote.msg", "quote.sig", extraData, "pcrs.ser");
      const v = await createTPMValidator(defaultPolicy()).validate(encodeDocument(q.parts), { nonce: q.nonce, userData: q.parts.userData });
      expect(v.ok).toBe(true);
    });
  }
});

describe("software evidence from the test builder", () => {
  for (const [kind, scheme] of [["rsa-rsassa", "rsassa"], ["rsa-rsapss", "rsapss"], ["ecc-p256", "ecdsa"]] as const) {
    it(`${kind}: ${scheme === "rsapss" ? "openssl" : "tpm2_checkquote"} verifies its AK public, quote and signature (the builder marshals what the tools read)`, async () => {
      const nonce = randomBytes(32);
      const userData = randomBytes(32);
      const ak = makeAK(kind);
      const parts = buildEvidence({ ak, nonce, userData, akCertChain: testAKCertChain(ak) });
      await writeFile(join(dir, "b.pem"), ak.publicKey.export({ format: "pem", type: "spki" }));
      await writeFile(join(dir, "b.pub"), parts.akPublic);
      await writeFile(join(dir, "b.msg"), parts.quote);
      await writeFile(join(dir, "b.sig"), parts.signature);
      const extraData = createHash("sha256").update(nonce).update(userData).digest("hex");
      // Without -f: tpm2_checkquote 5.4 fails on any `-F values` PCR file given with -l ("Something
      // wrong, trying to print"), and the serialized form is a dump of its C structs. The PCR digest
      // is cross-checked against swtpm's own quotes above.
      const check = () => checkQuote(scheme, "b.pub", "b.pem", "b.msg", "b.sig", extraData);
      await check();
      // And a tampered signature is refused by the tool as well as by us.
      const bad = Uint8Array.from(parts.signature);
      bad[bad.length - 1] ^= 1;
      await writeFile(join(dir, "b.sig"), bad);
      await expect(check()).rejects.toThrow(/failed/);
      const policy = parsePolicy({ tpm: { pcrs: { "0": Buffer.from(parts.pcrs.get(0)!).toString("hex") }, allowTestRoot: true } });
      const v = await createTPMValidator(policy).validate(encodeDocument({ ...parts, signature: bad }), { nonce, userData });
      expect(failed(v)).toEqual(["signature"]);
    });
  }
});
