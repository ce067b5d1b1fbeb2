import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import type { Binding, Validator } from "../../src/attestation/attestation.js";
import { defaultPolicy } from "../../src/attestation/policy.js";
import { SimulatedSNPIssuer } from "../../src/attestation/snp-simulated.js";
import { SIMULATED_SNP_MEASUREMENT } from "../../src/attestation/snp-simulated.js";
import { createSNPValidator, encodeSNPDocument, parseSNPDocument, type SNPDocument } from "../../src/attestation/snp-validator.js";

// Mutation fuzzing of the SNP validator: every mutated document must come back as a verdict (no
// exception escapes) and never as ok=true. Seeded, so a failure names a reproducible input.
const SEED = 0x5eed5a9;
const PER_MUTATOR = 900;
const EVIDENCE = new URL("../../../shared/evidence/snp/", import.meta.url);

/** mulberry32: a small seeded PRNG; deterministic across runs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Base {
  name: string;
  doc: SNPDocument;
  text: Uint8Array;
  validator: Validator;
  binding: Binding;
}

type Field = "report" | "vcek" | "ask" | "ark" | "userData";
const FIELDS: Field[] = ["report", "vcek", "ask", "ark", "userData"];
const get = (d: SNPDocument, f: Field): Uint8Array => (f === "ask" ? d.certChain[0] : f === "ark" ? d.certChain[1] : d[f]);
function withField(d: SNPDocument, f: Field, v: Uint8Array): SNPDocument {
  if (f === "ask") return { ...d, certChain: [v, d.certChain[1]] };
  if (f === "ark") return { ...d, certChain: [d.certChain[0], v] };
  return { ...d, [f]: v };
}

type Mutator = (rnd: () => number, base: Base, other: Base) => Uint8Array;
const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);
const pick = <T,>(rnd: () => number, xs: readonly T[]): T => xs[int(rnd, xs.length)];
const flip = (rnd: () => number, b: Uint8Array, count: number, from = 0, to = b.length): Uint8Array => {
  const out = new Uint8Array(b);
  for (let i = 0; i < count; i++) out[from + int(rnd, to - from)] ^= 1 + int(rnd, 255);
  return out;
};
const randomBytes = (rnd: () => number, n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(rnd, 256));
const enc = (d: SNPDocument): Uint8Array => encodeSNPDocument(d);
const textOf = (b: Uint8Array): string => Buffer.from(b).toString("latin1");
const bytesOf = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "latin1"));

const mutators: Record<string, Mutator> = {
  "report byte flips": (rnd, b) => enc({ ...b.doc, report: flip(rnd, b.doc.report, 1 + int(rnd, 4), 0, 0x330) }),
  "report signature and tail flips": (rnd, b) =>
    enc({ ...b.doc, report: rnd() < 0.5 ? flip(rnd, b.doc.report, 1 + int(rnd, 2), 0x2a0, 0x330) : flip(rnd, b.doc.report, 1, 0x330, 0x4a0) }),
  "report field rewrites without re-signing": (rnd, b) => {
    const r = new Uint8Array(b.doc.report);
    const dv = new DataView(r.buffer);
    const edits = [
      () => dv.setUint32(0, pick(rnd, [0, 1, 3, 4, 5, 6, 0xffffffff]), true),
      () => dv.setUint32(0x30, 1 + int(rnd, 4), true),
      () => (r[0x0a] = r[0x0a] ^ 0x08), // DEBUG bit 19 toggled
      () => (r[0x90 + int(rnd, 48)] ^= 1),
      () => (r[0x180 + pick(rnd, [0, 1, 6, 7])] ^= 1),
      () => (r[0x1a0 + int(rnd, 64)] ^= 1),
      () => (r[0x50 + int(rnd, 64)] ^= 1),
      () => dv.setUint32(0x48, 1 + int(rnd, 31), true),
      () => dv.setUint32(0x34, int(rnd, 2) === 0 ? 0 : 2, true),
    ];
    pick(rnd, edits)();
    return enc({ ...b.doc, report: r });
  },
  "certificate byte flips": (rnd, b) => {
    const f = pick(rnd, ["vcek", "ask", "ark"] as const);
    return enc(withField(b.doc, f, flip(rnd, get(b.doc, f), 1 + int(rnd, 3))));
  },
  "document truncations": (rnd, b) => b.text.subarray(0, int(rnd, b.text.length)),
  "field truncations": (rnd, b) => {
    const f = pick(rnd, ["report", "vcek", "ask", "ark"] as const);
    return enc(withField(b.doc, f, get(b.doc, f).subarray(0, int(rnd, get(b.doc, f).length))));
  },
  "extensions": (rnd, b) => {
    if (rnd() < 0.5) {
      const tail = Array.from({ length: 1 + int(rnd, 16) }, () => pick(rnd, [..."x}]{[,0\"\u00ff\u0000"]));
      return bytesOf(textOf(b.text) + tail.join(""));
    }
    const f = pick(rnd, FIELDS);
    return enc(withField(b.doc, f, Buffer.concat([get(b.doc, f), randomBytes(rnd, 1 + int(rnd, 64))])));
  },
  "field swaps": (rnd, b, o) => {
    for (;;) {
      const [f, g] = [pick(rnd, FIELDS), pick(rnd, FIELDS)];
      const from = rnd() < 0.3 ? o.doc : b.doc;
      const v = get(from, g);
      if (Buffer.from(v).equals(get(b.doc, f))) continue;
      const d = withField(b.doc, f, v);
      return enc(from === b.doc && f !== g ? withField(d, g, get(b.doc, f)) : d);
    }
  },
  "broken base64": (rnd, b) => {
    const s = textOf(b.text);
    const strings = [...s.matchAll(/(?<=[:,[])"([A-Za-z0-9+/=]{4,})"(?=[,\]}])/g)]; // values, not keys
    const m = pick(rnd, strings);
    const at = m.index + 1 + int(rnd, m[1].length);
    const edit = int(rnd, 4);
    if (edit === 0) return bytesOf(s.slice(0, at) + pick(rnd, ["!", "-", "_", ".", " ", "\\n", "%"]) + s.slice(at + 1));
    if (edit === 1) return bytesOf(s.slice(0, at) + s.slice(at + 1));
    if (edit === 2) return bytesOf(s.slice(0, at) + "=" + s.slice(at));
    // Set the padding bits of the last character: same bytes under a lenient decoder.
    const end = m.index + m[1].length;
    const pad = m[1].endsWith("==") ? 2 : m[1].endsWith("=") ? 1 : 0;
    if (pad === 0) return bytesOf(s.slice(0, end + 1) + s.slice(end + 1).replace(/"/, '="'));
    const last = end - pad;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const v = alphabet.indexOf(s[last]) | (pad === 2 ? 1 + int(rnd, 15) : 1 + int(rnd, 3));
    return bytesOf(s.slice(0, last) + alphabet[v] + s.slice(last + 1));
  },
  "broken JSON bytes": (rnd, b) => {
    const out = new Uint8Array(b.text);
    const i = int(rnd, out.length);
    out[i] = (out[i] + 1 + int(rnd, 255)) & 0xff;
    return out;
  },
  "wrong JSON shapes": (rnd, b) => {
    const j = JSON.parse(textOf(b.text)) as Record<string, unknown>;
    const key = pick(rnd, ["report", "vcek", "certChain", "userData"]);
    const shapes: (() => void)[] = [
      () => delete j[key],
      () => (j[key] = pick(rnd, [null, 0, true, {}, [], "", "AAAA"])),
      () => ((j[key.toUpperCase()] = j[key]), delete j[key]),
      () => (j.certChain = pick(rnd, [[], [(j.certChain as string[])[0]], [...(j.certChain as string[]), "AAAA"], "x"])),
      () => (j.extra = pick(rnd, [null, 1, "x"])),
    ];
    pick(rnd, shapes)();
    return bytesOf(rnd() < 0.1 ? JSON.stringify([j]) : JSON.stringify(j));
  },
  "random documents": (rnd, b) => {
    if (rnd() < 0.3) return randomBytes(rnd, int(rnd, 4096));
    // A random report with a zero tail and a plausible version, under the base's real certificates.
    const report = Buffer.concat([randomBytes(rnd, 0x330), new Uint8Array(0x4a0 - 0x330)]);
    report.writeUInt32LE(2 + int(rnd, 2), 0);
    return enc({ ...b.doc, report });
  },
};

describe("fuzz: mutated SNP documents", () => {
  const bases: Base[] = [];
  let total = 0;

  beforeAll(async () => {
    const nonce = new Uint8Array(32).fill(0x42);
    const userData = new Uint8Array(32).fill(0x17);
    const issuer = new SimulatedSNPIssuer();
    const simPolicy = defaultPolicy();
    simPolicy.snp.allowTestRoot = true;
    simPolicy.snp.measurement = SIMULATED_SNP_MEASUREMENT;
    const simText = await issuer.issue(nonce, userData);
    bases.push({ name: "simulated", doc: parseSNPDocument(simText), text: simText, validator: createSNPValidator(simPolicy, { testRoots: [await issuer.testRoot()] }), binding: { nonce, userData } });
    const pem = readFileSync(new URL("milan-v2-virtee/cert_chain_milan.pem", EVIDENCE), "utf8");
    const [ask, ark] = [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END/g)].map((m) => new Uint8Array(Buffer.from(m[1].replace(/\s/g, ""), "base64")));
    const realDoc: SNPDocument = { report: new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE))), vcek: new Uint8Array(readFileSync(new URL("milan-v2-virtee/vcek.der", EVIDENCE))), certChain: [ask, ark], userData: new Uint8Array(0) };
    const realPolicy = defaultPolicy();
    realPolicy.snp.measurement = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
    const realText = encodeSNPDocument(realDoc);
    // userData is bound by comparison: the real evidence carries no nonce for our binding.
    bases.push({ name: "milan-v2-virtee", doc: parseSNPDocument(realText), text: realText, validator: createSNPValidator(realPolicy, { now: () => new Date("2025-06-01T00:00:00Z") }), binding: { userData: new Uint8Array(0) } });
    for (const b of bases) {
      const v = await b.validator.validate(b.text, b.binding);
      expect(v.ok, `${b.name} base document must verify, or the fuzz proves nothing: ${JSON.stringify(v.checks)}`).toBe(true);
    }
  });

  for (const [name, mutate] of Object.entries(mutators)) {
    it(name, async () => {
      const rnd = prng(SEED ^ [...name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7));
      for (let i = 0; i < PER_MUTATOR; i++) {
        const base = bases[i % 2];
        const doc = mutate(rnd, base, bases[(i + 1) % 2]);
        if (Buffer.from(doc).equals(base.text)) continue;
        let verdict;
        try {
          verdict = await base.validator.validate(doc, base.binding);
        } catch (err) {
          throw new Error(`${name} #${i} on ${base.name}: validate threw`, { cause: err });
        }
        total++;
        if (verdict.ok) expect.fail(`${name} #${i} on ${base.name}: mutated document accepted: ${textOf(doc).slice(0, 200)} ${JSON.stringify(verdict.checks)}`);
        expect(verdict.checks.some((c) => c.status === "failed")).toBe(true);
      }
    });
  }

  it("ran at least 10,000 mutated documents", () => {
    expect(total).toBeGreaterThanOrEqual(10_000);
  });
});
