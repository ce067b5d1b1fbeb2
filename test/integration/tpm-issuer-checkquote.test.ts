/**
 * Cross-checks TPMIssuer's documents with tools nobody here wrote: tpm2-tools' tpm2_checkquote verifies
 * the quote signature, the qualifying data (SHA-256(nonce ‖ userData)) and the PCR digest against the
 * listed PCR values; tpm2_print parses the AK public and the TPMS_ATTEST.
 */
import { createHash, createPublicKey, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { openTPM, type TPMDocument, type TPMIssuer } from "../../src/attestation/tpm-issuer.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

// tpm2-tss logs every failure to stderr itself; the errors under test already carry the call and rc.
process.env.TSS2_LOG ??= "all+none";

/**
 * akPEM converts an AK's TPM2B_PUBLIC to a SubjectPublicKeyInfo PEM from its unique field, reading
 * TPMT_PUBLIC (TPM 2.0 Part 2, 12.2.4) for the two templates the addon makes.
 */
function akPEM(pub: Buffer): string {
  let at = 2;
  const u16 = () => ((at += 2), pub.readUInt16BE(at - 2));
  const b2 = () => {
    const n = u16();
    return ((at += n), pub.subarray(at - n, at));
  };
  const type = u16();
  u16(); // nameAlg
  at += 4; // objectAttributes
  b2(); // authPolicy
  if (u16() !== 0x0010) throw new Error("symmetric must be TPM_ALG_NULL");
  if (u16() !== 0x0010) u16(); // scheme and its hash
  const b64url = (b: Buffer) => b.toString("base64url");
  if (type === 0x0023) {
    if (u16() !== 0x0003) throw new Error("curve must be NIST P-256");
    if (u16() !== 0x0010) u16(); // kdf
    const x = b2();
    const y = b2();
    return createPublicKey({ key: { kty: "EC", crv: "P-256", x: b64url(x), y: b64url(y) }, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
  }
  if (type === 0x0001) {
    u16(); // keyBits
    const exponent = pub.readUInt32BE(at) || 65537;
    at += 4;
    const n = b2();
    const e = Buffer.from(exponent.toString(16).padStart(6, "0"), "hex");
    return createPublicKey({ key: { kty: "RSA", n: b64url(n), e: b64url(e) }, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
  }
  throw new Error(`unexpected key type ${type}`);
}

interface Files {
  akPem: string;
  akTss: string;
  msg: string;
  sig: string;
  pcrs: string;
  qualifying: string;
}

/**
 * serializedPCRs writes SHA-256 PCR values in tpm2-tools' "serialized" PCR file format (what
 * `tpm2_quote -o` and `tpm2_pcrread -F serialized` write): the host-endian TPML_PCR_SELECTION struct
 * (u32 count, 16 × {u16 hash, u8 sizeofSelect, u8[4] pcrSelect, pad}), a u32 number of TPML_DIGEST
 * blocks, and the blocks (u32 count, 8 × {u16 size, u8[64] buffer}). tpm2_checkquote 5.4's values-only
 * format (-f with -l) mishandles more than 8 PCRs, so this one is used. The test below checks the
 * encoding against tpm2_pcrread's own output.
 */
function serializedPCRs(values: { index: number; value: Buffer }[]): Buffer {
  const sel = Buffer.alloc(4 + 16 * 8);
  sel.writeUInt32LE(1, 0);
  sel.writeUInt16LE(0x000b, 4);
  sel.writeUInt8(3, 6);
  for (const { index } of values) sel[7 + (index >> 3)] |= 1 << (index & 7);
  const blocks: Buffer[] = [];
  for (let i = 0; i < values.length; i += 8) {
    const chunk = values.slice(i, i + 8);
    const b = Buffer.alloc(4 + 8 * 66);
    b.writeUInt32LE(chunk.length, 0);
    chunk.forEach((v, k) => {
      b.writeUInt16LE(v.value.length, 4 + k * 66);
      v.value.copy(b, 6 + k * 66);
    });
    blocks.push(b);
  }
  const count = Buffer.alloc(4);
  count.writeUInt32LE(blocks.length, 0);
  return Buffer.concat([sel, count, ...blocks]);
}

/** writeEvidence writes a document's parts in tpm2_checkquote's input formats. */
async function writeEvidence(dir: string, name: string, doc: TPMDocument, qualifying: Buffer): Promise<Files> {
  const f = (s: string) => join(dir, `${name}.${s}`);
  const akPublic = Buffer.from(doc.akPublic, "base64");
  const indices = Object.keys(doc.pcrs.sha256).map(Number).sort((a, b) => a - b);
  await writeFile(f("ak.pem"), akPEM(akPublic));
  await writeFile(f("ak.tss"), akPublic);
  await writeFile(f("msg"), Buffer.from(doc.quote, "base64"));
  await writeFile(f("sig"), Buffer.from(doc.signature, "base64"));
  await writeFile(f("pcrs"), serializedPCRs(indices.map((index) => ({ index, value: Buffer.from(doc.pcrs.sha256[String(index)], "hex") }))));
  return { akPem: f("ak.pem"), akTss: f("ak.tss"), msg: f("msg"), sig: f("sig"), pcrs: f("pcrs"), qualifying: qualifying.toString("hex") };
}

function checkquote(files: Files, over: Partial<Files> = {}) {
  const x = { ...files, ...over };
  return execa("tpm2_checkquote", ["-u", x.akPem, "-m", x.msg, "-s", x.sig, "-f", x.pcrs, "-g", "sha256", "-q", x.qualifying], { reject: false });
}

const cases = [
  { name: "ECC P-256 AK", ak: { type: "ecc" as const } },
  { name: "RSA-2048 AK", ak: { type: "rsa" as const } },
];

describe.each(cases)("tpm2_checkquote accepts TPMIssuer documents ($name)", ({ ak }) => {
  let swtpm: Swtpm;
  let issuer: TPMIssuer;
  let files: Files;
  let doc: TPMDocument;
  const nonce = randomBytes(32);
  const userData = createHash("sha256").update("certificate SPKI").digest();
  const qualifying = createHash("sha256").update(nonce).update(userData).digest();

  beforeAll(async () => {
    swtpm = await startSwtpm({ provision: [ak.type] });
    issuer = await openTPM(swtpm.tcti, { ak });
    await issuer.tpm.pcrEvent(11, randomBytes(32)); // make the quoted PCRs not all zero
    doc = JSON.parse(new TextDecoder().decode(await issuer.issue(nonce, userData))) as TPMDocument;
    files = await writeEvidence(swtpm.stateDir, "good", doc, qualifying);
  });
  afterAll(async () => {
    await issuer?.close();
    await swtpm?.stop();
  });

  it("verifies signature, qualifying data and PCR digest with the AK as PEM", async () => {
    const r = await checkquote(files);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`11: 0x${doc.pcrs.sha256["11"].toUpperCase()}`);
  });

  it("writes the PCR file exactly as tpm2_pcrread -F serialized does", async () => {
    const out = join(swtpm.stateDir, "tools.pcrs");
    await execa("tpm2_pcrread", [`sha256:${Object.keys(doc.pcrs.sha256).join(",")}`, "-F", "serialized", "-o", out], { env: { TPM2TOOLS_TCTI: swtpm.tcti } });
    expect(await readFile(files.pcrs)).toEqual(await readFile(out));
  });

  it("verifies with the AK in TSS format (the TPM2B_PUBLIC exactly as served)", async () => {
    expect((await checkquote(files, { akPem: files.akTss })).exitCode).toBe(0);
  });

  it("tpm2_print reads the AK as a restricted signing key and the quote's extraData", async () => {
    const pub = (await execa("tpm2_print", ["-t", "TPM2B_PUBLIC", files.akTss])).stdout;
    expect(pub).toMatch(/value: fixedtpm\|fixedparent\|sensitivedataorigin\|userwithauth\|restricted\|sign\n/);
    const attest = (await execa("tpm2_print", ["-t", "TPMS_ATTEST", files.msg])).stdout;
    expect(attest).toContain(`extraData: ${qualifying.toString("hex")}`);
    expect(attest).toContain("type: 8018");
  });

  const lies: { name: string; reason: string; change: (f: Files, dir: string) => Promise<Partial<Files>> }[] = [
    { name: "another nonce", reason: "Error validating nonce from quote", change: async () => ({ qualifying: randomBytes(32).toString("hex") }) },
    {
      name: "a changed PCR value",
      reason: "PCR values failed to match quote's digest",
      change: async (f, dir) => {
        const bad = { ...doc, pcrs: { sha256: { ...doc.pcrs.sha256, "12": "11".repeat(32) } } };
        return { pcrs: (await writeEvidence(dir, "badpcr", bad, qualifying)).pcrs, akPem: f.akPem };
      },
    },
    {
      name: "another TPM's AK",
      reason: "Error validating signed message with public key provided",
      change: async (_f, dir) => {
        const other = await startSwtpm({ provision: [ak.type] });
        try {
          const i = await openTPM(other.tcti, { ak });
          const d = JSON.parse(new TextDecoder().decode(await i.issue(nonce, userData))) as TPMDocument;
          await i.close();
          return { akPem: (await writeEvidence(dir, "other", d, qualifying)).akPem };
        } finally {
          await other.stop();
        }
      },
    },
  ];
  for (const lie of lies) {
    it(`rejects the quote with ${lie.name}`, async () => {
      const r = await checkquote(files, await lie.change(files, swtpm.stateDir));
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(lie.reason);
    });
  }
});
