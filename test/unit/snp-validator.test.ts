import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Binding, CheckStatus, Verdict } from "../../src/attestation/attestation.js";
import { platformOIDs } from "../../src/attestation/attestation.js";
import { defaultPolicy, type SNPPolicy } from "../../src/attestation/policy.js";
import { generateSimulatedSNPChain, SimulatedSNPIssuer, SIMULATED_SNP_MEASUREMENT, type SimulatedSNPOptions } from "../../src/attestation/snp-simulated.js";
import { MAX_DOCUMENT_BYTES } from "../../src/attestation/document.js";
import { createSNPValidator, encodeSNPDocument, parseSNPDocument, snpCheckNames, type SNPValidatorOptions } from "../../src/attestation/snp-validator.js";

const EVIDENCE = new URL("../../../shared/evidence/snp/", import.meta.url);
const file = (p: string): Uint8Array => new Uint8Array(readFileSync(new URL(p, EVIDENCE)));
const pems = (p: string): Uint8Array[] =>
  [...readFileSync(new URL(p, EVIDENCE), "utf8").matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map(
    (m) => new Uint8Array(Buffer.from(m[1].replace(/\s/g, ""), "base64")),
  );
/** Real evidence was captured in 2022-2023; its VCEKs expire in 2029-2030. Check it at a fixed date. */
const EVIDENCE_NOW = (): Date => new Date("2025-06-01T00:00:00Z");
const VIRTEE_MEASUREMENT = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

function realDoc(folder: string, chainFile: string, over: { vcek?: Uint8Array; ark?: Uint8Array; ask?: Uint8Array } = {}): Uint8Array {
  const [ask, ark] = pems(`${folder}/${chainFile}`) as [Uint8Array, Uint8Array];
  return encodeSNPDocument({
    report: file(`${folder}/report.bin`),
    vcek: over.vcek ?? file(`${folder}/vcek.der`),
    certChain: [over.ask ?? ask, over.ark ?? ark],
    userData: new Uint8Array(0),
  });
}
const virtee = (over?: Parameters<typeof realDoc>[2]): Uint8Array => realDoc("milan-v2-virtee", "cert_chain_milan.pem", over);
const debugDoc = (): Uint8Array => realDoc("milan-v2-debug", "ask_ark_milan.pem");

const nonceA = new Uint8Array(32).fill(0xaa);
const nonceB = new Uint8Array(32).fill(0xbb);
const userA = new Uint8Array(32).fill(0x01);
const userB = new Uint8Array(32).fill(0x02);
const simulated = (o: SimulatedSNPOptions = {}, nonce = nonceA, user = userA): Promise<Uint8Array> => new SimulatedSNPIssuer(o).issue(nonce, user);
const testRoot = (): Promise<Uint8Array> => new SimulatedSNPIssuer().testRoot();

type PolicyEdit = (p: { snp: SNPPolicy }) => void;

/** ownMeasurement reads the (unverified) measurement of a document's report, to pin it by default. */
function ownMeasurement(doc: Uint8Array): string | undefined {
  try {
    return Buffer.from(parseSNPDocument(doc).report.subarray(0x90, 0xc0)).toString("hex");
  } catch {
    return undefined;
  }
}
const allowTest: PolicyEdit = (p) => {
  p.snp.allowTestRoot = true;
};

interface Case {
  name: string;
  doc: () => Promise<Uint8Array> | Uint8Array;
  policy?: PolicyEdit[];
  /** options: testRoots default to the process simulator's root; real evidence uses EVIDENCE_NOW. */
  options?: () => Promise<SNPValidatorOptions>;
  binding?: Binding;
  ok: boolean;
  /** failed is the exact set of failed checks. */
  failed?: string[];
  status?: Record<string, CheckStatus>;
  detail?: Record<string, RegExp>;
}

const real = async (): Promise<SNPValidatorOptions> => ({ now: EVIDENCE_NOW });
const withTestRoot = async (): Promise<SNPValidatorOptions> => ({ testRoots: [await testRoot()] });
const bindA: Binding = { nonce: nonceA, userData: userA };

const cases: Case[] = [
  // Real evidence: signature, chain and policy; bindings skipped (the evidence was not made for our binding).
  {
    name: "milan-v2-virtee verifies through the pinned ARK-Milan",
    doc: () => virtee(),
    options: real,
    ok: true,
    failed: [],
    status: { format: "passed", "report version": "passed", "cert chain": "passed", signature: "passed", "nonce binding": "skipped", "userData binding": "skipped", debug: "passed", vmpl: "passed", measurement: "passed", tcb: "passed", "chip id": "passed" },
    detail: { "cert chain": /ARK Milan \(pinned\)/ },
  },
  { name: "no measurement pinned: refused, never skipped", doc: () => virtee(), options: real, policy: [(p) => void delete p.snp.measurement], ok: false, failed: ["measurement"], detail: { measurement: /pins no snp.measurement/ } },
  { name: "milan-v2-virtee with its measurement pinned", doc: () => virtee(), options: real, policy: [(p) => void (p.snp.measurement = VIRTEE_MEASUREMENT)], ok: true, status: { measurement: "passed" } },
  { name: "milan-v2-virtee with another measurement pinned", doc: () => virtee(), options: real, policy: [(p) => void (p.snp.measurement = "00".repeat(48))], ok: false, failed: ["measurement"] },
  { name: "milan-v2-virtee with a nonce: not made for this handshake", doc: () => virtee(), options: real, binding: { nonce: nonceA }, ok: false, failed: ["nonce binding"] },
  { name: "milan-v2-virtee with requireFresh: fresh marker skipped, not failed", doc: () => virtee(), options: real, binding: { requireFresh: true }, ok: true, status: { "fresh marker": "skipped" }, detail: { "fresh marker": /host_data/ } },
  { name: "milan-v2-virtee with minTcb microcode above the report", doc: () => virtee(), options: real, policy: [(p) => void (p.snp.minTcb.microcode = 116)], ok: false, failed: ["tcb"], detail: { tcb: /microcode \(115 < 116\)/ } },
  { name: "milan-v2-virtee at minTcb equal to the report", doc: () => virtee(), options: real, policy: [(p) => void (p.snp.minTcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 })], ok: true },
  { name: "milan-v2-virtee after its VCEK expired", doc: () => virtee(), options: async () => ({ now: () => new Date("2031-01-01T00:00:00Z") }), ok: false, failed: ["cert chain"] },
  { name: "milan-v2-debug is rejected by the default policy", doc: debugDoc, options: real, ok: false, failed: ["debug"], detail: { debug: /bit 19/ } },
  { name: "milan-v2-debug is accepted with allowDebug", doc: debugDoc, options: real, policy: [(p) => void (p.snp.allowDebug = true)], ok: true, status: { debug: "passed", signature: "passed", "cert chain": "passed" } },
  {
    name: "invalid VCEK (legacy) fails the chain",
    doc: () => virtee({ vcek: file("invalid-vceks/test-vcek-invalid-legacy.der") }),
    options: real,
    ok: false,
    status: { "cert chain": "failed", signature: "failed", tcb: "failed", "chip id": "failed" },
    detail: { "cert chain": /VCEK is not signed by the ASK/ },
  },
  {
    name: "invalid VCEK (new) fails the chain",
    doc: () => virtee({ vcek: file("invalid-vceks/test-vcek-invalid-new.der") }),
    options: real,
    ok: false,
    status: { "cert chain": "failed", signature: "failed" },
    detail: { "cert chain": /VCEK is not signed by the ASK/ },
  },
  { name: "milan-v2-debug's VCEK on the virtee report", doc: () => virtee({ vcek: file("milan-v2-debug/vcek.der") }), options: real, ok: false, failed: ["signature", "tcb", "chip id"] },
  {
    name: "a chain to a non-pinned root fails (ARK replaced by a simulated one)",
    doc: async () => virtee({ ark: (await generateSimulatedSNPChain(1024)).ark.der }),
    options: real,
    ok: false,
    failed: ["cert chain"],
    detail: { "cert chain": /not a pinned root/ },
  },
  { name: "the Genoa chain does not sign a Milan VCEK", doc: () => virtee({ ask: pems("amd-roots/genoa/ask.pem")[0], ark: pems("amd-roots/genoa/ark.pem")[0] }), options: real, ok: false, failed: ["cert chain"] },
  // The simulated secure processor.
  { name: "simulator: rejected without allowTestRoot", doc: () => simulated(), options: withTestRoot, binding: bindA, ok: false, failed: ["cert chain"], detail: { "cert chain": /test root.*allowTestRoot/ } },
  { name: "simulator: rejected with allowTestRoot but no test root given", doc: () => simulated(), policy: [allowTest], binding: bindA, ok: false, failed: ["cert chain"], detail: { "cert chain": /not a pinned root/ } },
  {
    name: "simulator: accepted with allowTestRoot",
    doc: () => simulated(),
    policy: [allowTest, (p) => void (p.snp.measurement = SIMULATED_SNP_MEASUREMENT)],
    options: withTestRoot,
    binding: { ...bindA, requireFresh: true },
    ok: true,
    failed: [],
    status: { "nonce binding": "passed", "userData binding": "passed", measurement: "passed", tcb: "passed", "chip id": "passed", "fresh marker": "skipped" },
  },
  { name: "simulator: version 2 report accepted", doc: () => simulated({ version: 2 }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: true },
  { name: "simulator: another simulator's root is not this one", doc: async () => simulated({ chain: await generateSimulatedSNPChain(1024) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["cert chain"] },
  { name: "simulator: wrong nonce", doc: () => simulated(), policy: [allowTest], options: withTestRoot, binding: { nonce: nonceB, userData: userA }, ok: false, failed: ["nonce binding"] },
  { name: "simulator: report replayed from another handshake", doc: () => simulated({}, nonceB, userB), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["nonce binding", "userData binding"] },
  {
    name: "simulator: replayed report with the userData swapped for this handshake's",
    doc: async () => {
      const d = parseSNPDocument(await simulated({}, nonceA, userB));
      return encodeSNPDocument({ ...d, userData: userA });
    },
    policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["nonce binding"],
  },
  { name: "simulator: vmpl 1 with maxVmpl 0", doc: () => simulated({ vmpl: 1 }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["vmpl"] },
  { name: "simulator: vmpl 1 with maxVmpl 1", doc: () => simulated({ vmpl: 1 }), policy: [allowTest, (p) => void (p.snp.maxVmpl = 1)], options: withTestRoot, binding: bindA, ok: true },
  { name: "simulator: debug guest refused", doc: () => simulated({ debug: true }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["debug"] },
  { name: "simulator: minTcb above the report", doc: () => simulated(), policy: [allowTest, (p) => void (p.snp.minTcb.snp = 23)], options: withTestRoot, binding: bindA, ok: false, failed: ["tcb"], detail: { tcb: /snp \(22 < 23\)/ } },
  {
    name: "simulator: reported_tcb differs from the VCEK's TCB extensions",
    doc: () => simulated({ beforeSign: (r) => void (r[0x180 + 7] = 250) }),
    policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["tcb"], detail: { tcb: /differs from reported_tcb/ },
  },
  { name: "simulator: chip_id differs from the VCEK's hwID", doc: () => simulated({ beforeSign: (r) => void (r[0x1a0] = r[0x1a0] ^ 1) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["chip id"] },
  { name: "simulator: masked chip_id is skipped", doc: () => simulated({ beforeSign: (r) => void r.fill(0, 0x1a0, 0x1e0) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: true, status: { "chip id": "skipped" } },
  {
    name: "simulator: measurement changed after signing",
    doc: async () => {
      const d = parseSNPDocument(await simulated());
      d.report[0x90] = d.report[0x90] ^ 0x80;
      return encodeSNPDocument(d);
    },
    policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["signature"],
  },
  { name: "simulator: version 1 report", doc: () => simulated({ beforeSign: (r) => void (r[0] = 1) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["report version"] },
  { name: "simulator: signature_algo 2", doc: () => simulated({ beforeSign: (r) => void (r[0x34] = 2) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["signature"] },
  { name: "simulator: signed by a VLEK (signing_key 1)", doc: () => simulated({ beforeSign: (r) => void (r[0x48] = 1 << 2) }), policy: [allowTest], options: withTestRoot, binding: bindA, ok: false, failed: ["signature"], detail: { signature: /VLEK/ } },
  // Format.
  { name: "format: larger than 64 KiB", doc: () => new Uint8Array(MAX_DOCUMENT_BYTES + 1).fill(0x20), ok: false, failed: ["format"] },
  {
    name: "format: a duplicate key",
    doc: () => new TextEncoder().encode(new TextDecoder().decode(virtee()).replace('{"report":', '{"userData":"","report":')),
    options: real, ok: false, failed: ["format"], detail: { format: /duplicate key/ },
  },
  { name: "format: not JSON", doc: () => new TextEncoder().encode("{report"), ok: false, failed: ["format"] },
  { name: "format: not UTF-8", doc: () => Uint8Array.of(0x7b, 0xff, 0x7d), ok: false, failed: ["format"] },
  { name: "format: a JSON array", doc: () => new TextEncoder().encode("[]"), ok: false, failed: ["format"] },
  {
    name: "format: an extra field",
    doc: () => new TextEncoder().encode(JSON.stringify({ ...JSON.parse(new TextDecoder().decode(virtee())), extra: 1 })),
    options: real, ok: false, failed: ["format"], detail: { format: /extra: unknown field/ },
  },
  {
    name: "format: certChain with three entries",
    doc: () => { const j = JSON.parse(new TextDecoder().decode(virtee())); j.certChain.push(j.certChain[0]); return new TextEncoder().encode(JSON.stringify(j)); },
    ok: false, failed: ["format"],
  },
  {
    name: "format: non-canonical base64 (padding bits set)",
    doc: () => { const j = JSON.parse(new TextDecoder().decode(virtee())); j.userData = "AB=="; return new TextEncoder().encode(JSON.stringify(j)); },
    ok: false, failed: ["format"], detail: { format: /userData: not canonical base64/ },
  },
  {
    name: "format: report one byte short",
    doc: async () => { const d = parseSNPDocument(await simulated()); return encodeSNPDocument({ ...d, report: d.report.subarray(1) }); },
    ok: false, failed: ["format"], detail: { format: /report: is 1183 bytes/ },
  },
  {
    name: "format: nonzero reserved byte after the signature",
    doc: async () => { const d = parseSNPDocument(await simulated()); d.report[0x400] = 1; return encodeSNPDocument(d); },
    ok: false, failed: ["format"], detail: { format: /reserved bytes/ },
  },
];

describe("createSNPValidator", () => {
  for (const tc of cases) {
    it(tc.name, async () => {
      const policy = defaultPolicy();
      const doc = await tc.doc();
      const own = ownMeasurement(doc);
      if (own !== undefined) policy.snp.measurement = own;
      for (const edit of tc.policy ?? []) edit(policy);
      const validator = createSNPValidator(policy, tc.options ? await tc.options() : {});
      const verdict: Verdict = await validator.validate(doc, tc.binding ?? {});
      const failed = verdict.checks.filter((c) => c.status === "failed").map((c) => c.name);
      const summary = JSON.stringify(verdict.checks, null, 1);
      expect(verdict.ok, summary).toBe(tc.ok);
      expect(verdict.platform).toBe("snp");
      if (tc.failed) expect(failed.sort(), summary).toEqual([...tc.failed].sort());
      for (const [name, status] of Object.entries(tc.status ?? {})) expect(verdict.checks.find((c) => c.name === name)?.status, `${name}: ${summary}`).toBe(status);
      for (const [name, re] of Object.entries(tc.detail ?? {})) expect(verdict.checks.find((c) => c.name === name)?.detail ?? "", name).toMatch(re);
      expect(verdict.checks.map((c) => c.name), "every check is named, in order").toEqual([...snpCheckNames]);
    });
  }

  it("a policy without an snp section refuses every SEV-SNP document", async () => {
    const v = await createSNPValidator({ tpm: { pcrs: new Map([[0, "00".repeat(32)]]), allowTestRoot: false } }, { now: EVIDENCE_NOW }).validate(virtee(), {});
    expect(v.ok).toBe(false);
    expect(v.checks.find((c) => c.name === "measurement")?.detail).toMatch(/names no snp section/);
  });

  it("is the snp platform under its OID", () => {
    const v = createSNPValidator(defaultPolicy());
    expect(v.platform).toBe("snp");
    expect(v.oid).toBe(platformOIDs.snp);
  });

  it("reports facts: measurement, TCB, vmpl, debug", async () => {
    const v = await createSNPValidator(defaultPolicy(), { now: EVIDENCE_NOW }).validate(debugDoc(), {});
    expect(v.ok).toBe(false);
    expect(v.facts).toMatchObject({
      measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
      "tcb.bootloader": "2", "tcb.tee": "0", "tcb.snp": "5", "tcb.microcode": "68", vmpl: "0", debug: "true", product: "Milan",
    });
  });

  it("copies the policy: changing it later does not change the validator", async () => {
    const policy = defaultPolicy();
    const v = createSNPValidator(policy, { now: EVIDENCE_NOW });
    policy.snp.allowDebug = true;
    expect((await v.validate(debugDoc(), {})).ok).toBe(false);
  });

  it("validates concurrently", async () => {
    const policy = defaultPolicy();
    policy.snp.allowTestRoot = true;
    policy.snp.measurement = SIMULATED_SNP_MEASUREMENT;
    const v = createSNPValidator(policy, { testRoots: [await testRoot()] });
    const issuer = new SimulatedSNPIssuer();
    const verdicts = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const nonce = new Uint8Array(32).fill(i);
        return v.validate(await issuer.issue(nonce, userA), { nonce, userData: userA });
      }),
    );
    expect(verdicts.every((x) => x.ok)).toBe(true);
  });
});
