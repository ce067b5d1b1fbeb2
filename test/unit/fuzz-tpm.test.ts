import { beforeAll, describe, expect, it } from "vitest";
import type { Binding } from "../../src/attestation/attestation.js";
import { readFileSync } from "node:fs";
import type { MeasurementPolicy } from "../../src/attestation/policy.js";
import { TPMParseError, parseTPM2BPublic, parseTPMSAttest, parseTPMTSignature } from "../../src/attestation/tpm-structures.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { buildEvidence, encodeDocument, gceDir, loadGCEEvidence, makeAK, testAKCertChain, type DocumentParts } from "../helpers/tpm-builder.js";

/**
 * Mutation fuzzing of the TPM validator with a seeded PRNG: every iteration derives its own seed, so
 * a failure message names the iteration and the mutation that reproduce it. Properties: validate
 * never rejects (throws), and never says ok unless the mutation left the document's meaning intact
 * (judged by an oracle that knows the document layout, not by the code under test).
 */

const SEED = 0x7e5c0de;
const ITERATIONS = 12_000;

/** rng is mulberry32: small, fast, and the same sequence on every platform. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)], bytes: (n: number) => Uint8Array.from({ length: n }, () => int(256)) };
}
type Rng = ReturnType<typeof rng>;

const boundaries = [0x0000, 0xffff, 0x8000, 0x7fff, 0x0001, 0x0100, 0x00ff];

/** mutateBytes applies one random byte-level mutation and says which. */
function mutateBytes(r: Rng, b: Uint8Array): [Uint8Array, string] {
  const at = () => r.int(Math.max(b.length, 1));
  switch (r.int(8)) {
    case 0: {
      const c = Uint8Array.from(b);
      const n = 1 + r.int(4);
      for (let k = 0; k < n && c.length > 0; k++) c[at()] ^= 1 << r.int(8);
      return [c, `flip ${n} bits`];
    }
    case 1: {
      const c = Uint8Array.from(b);
      if (c.length > 0) c[at()] = r.int(256);
      return [c, "random byte"];
    }
    case 2: {
      const n = r.int(b.length);
      return [b.slice(0, n), `truncate to ${n}`];
    }
    case 3: {
      const n = 1 + r.int(16);
      return [Uint8Array.from([...b, ...r.bytes(n)]), `extend by ${n}`];
    }
    case 4: {
      const i = at();
      return [Uint8Array.from([...b.subarray(0, i), ...r.bytes(1 + r.int(8)), ...b.subarray(i)]), `insert at ${i}`];
    }
    case 5: {
      const i = at();
      const n = 1 + r.int(8);
      return [Uint8Array.from([...b.subarray(0, i), ...b.subarray(i + n)]), `delete ${n} at ${i}`];
    }
    case 6: {
      const c = Uint8Array.from(b);
      const i = at();
      const v = r.pick(boundaries);
      if (i + 1 < c.length) c.set([v >> 8, v & 0xff], i);
      return [c, `u16 ${v} at ${i}`];
    }
    default: {
      const i = at();
      const j = at();
      const [lo, hi] = i < j ? [i, j] : [j, i];
      return [Uint8Array.from([...b, ...b.subarray(lo, hi)]), `duplicate ${lo}..${hi}`];
    }
  }
}

interface Base {
  name: string;
  parts: DocumentParts;
  binding: Binding;
  text: string;
}

const binaryFields = ["akPublic", "quote", "signature", "userData"] as const;
const topFields = ["akPublic", "quote", "signature", "pcrs", "userData", "akCertChain"] as const;

/** mutate makes one mutated document from `base` (others supply values for cross-document swaps). */
function mutate(r: Rng, base: Base, others: Base[]): [Uint8Array, string] {
  const obj = () => JSON.parse(base.text) as Record<string, any>;
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
  switch (r.int(8)) {
    case 7: {
      // The AK certificate (what vouches for the AK): any change must fail "ak anchoring" or earlier.
      const chain = base.parts.akCertChain!;
      const [b, d] = mutateBytes(r, chain[0]);
      return [encodeDocument({ ...base.parts, akCertChain: [b, ...chain.slice(1)] }), `akCertChain[0]: ${d}`];
    }
    case 6: {
      // objectAttributes of the AK's TPM2B_PUBLIC (bytes 6..9): random bit flips rarely land there.
      const ak = Uint8Array.from(base.parts.akPublic);
      const bit = r.int(32);
      ak[6 + (bit >> 3)] ^= 1 << (bit & 7);
      return [encodeDocument({ ...base.parts, akPublic: ak }), `objectAttributes bit ${31 - bit}`];
    }
    case 0:
    case 1: {
      const [b, d] = mutateBytes(r, Buffer.from(base.text));
      return [b, `json bytes: ${d}`];
    }
    case 2: {
      const f = r.pick(binaryFields);
      const [b, d] = mutateBytes(r, base.parts[f]);
      return [encodeDocument({ ...base.parts, [f]: b }), `${f}: ${d}`];
    }
    case 3: {
      const o = obj();
      const a = r.pick(topFields);
      const b = r.pick(topFields.filter((f) => f !== a));
      [o[a], o[b]] = [o[b], o[a]];
      return [enc(o), `swap ${a} <-> ${b}`];
    }
    case 4: {
      const o = obj();
      const f = r.pick(topFields);
      const kind = r.int(5);
      if (kind === 0) delete o[f];
      else if (kind === 1) o[r.pick(["nonce", "extra", "akpublic", "__proto__"])] = o[f];
      else if (kind === 2) o[f] = r.pick([null, 0, true, [], {}, "", "AAAA", [o[f]]]);
      else if (kind === 3) o[f] = JSON.parse(r.pick(others.filter((x) => x !== base)).text)[f];
      else o[f] = JSON.parse(r.pick(others.filter((x) => x !== base)).text)[r.pick(topFields)];
      return [enc(o), `field ${f} op ${kind}`];
    }
    default: {
      const o = obj();
      const bank = o.pcrs.sha256 as Record<string, string>;
      const keys = Object.keys(bank);
      const a = r.pick(keys);
      const b = r.pick(keys);
      const kind = r.int(4);
      if (kind === 0) [bank[a], bank[b]] = [bank[b], bank[a]];
      else if (kind === 1) delete bank[a];
      else if (kind === 2) bank[r.pick(["24", "07", "-1", String(r.int(24)), "1e1"])] = bank[a]!;
      else bank[a] = Buffer.from(mutateBytes(r, Buffer.from(bank[a], "hex"))[0]).toString("hex");
      return [enc(o), `pcr op ${kind} on ${a}/${b}`];
    }
  }
}

/**
 * allowedToPass is the oracle: true only when the mutated document means what the base meant.
 * Case of hex digits and key order do not matter; in akPublic only objectAttributes bits that the
 * AK profile leaves free (stClear, userWithAuth, adminWithPolicy, noDA, encryptedDuplication and
 * the newer bits 19-21) may change: the quote authenticates the AK's key, scheme and nameAlg but
 * not the rest of its public area.
 */
function allowedToPass(base: Base, mutated: Uint8Array): boolean {
  let o: Record<string, any>;
  try {
    o = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(mutated));
  } catch {
    return false;
  }
  const b = JSON.parse(base.text) as Record<string, any>;
  if (typeof o !== "object" || o === null || Object.keys(o).sort().join() !== Object.keys(b).sort().join()) return false;
  for (const f of ["quote", "signature", "userData"]) if (o[f] !== b[f]) return false;
  if (JSON.stringify(o.akCertChain) !== JSON.stringify(b.akCertChain)) return false;
  const canon = (p: any) => (typeof p?.sha256 === "object" && p.sha256 !== null ? JSON.stringify(Object.entries(p.sha256).map(([k, v]) => [k, String(v).toLowerCase()]).sort()) : "?");
  if (JSON.stringify(Object.keys(o.pcrs ?? {})) !== '["sha256"]' || canon(o.pcrs) !== canon(b.pcrs)) return false;
  if (o.akPublic === b.akPublic) return true;
  if (typeof o.akPublic !== "string") return false;
  const x = Buffer.from(o.akPublic, "base64");
  const y = Buffer.from(b.akPublic, "base64");
  if (x.length !== y.length || x.toString("base64") !== o.akPublic) return false;
  // TPM2B_PUBLIC: size(2) type(2) nameAlg(2) objectAttributes(4) ...
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && (i < 6 || i > 9)) return false;
  const free = (1 << 2) | (1 << 6) | (1 << 7) | (1 << 10) | (1 << 11) | (7 << 19);
  return ((x.readUInt32BE(6) ^ y.readUInt32BE(6)) & ~free) === 0;
}

/** fuzzPolicy pins the base document's PCR 0 and allows the test CA (the software bases' AK certificates). */
function fuzzPolicy(base: Base): MeasurementPolicy {
  return { tpm: { pcrs: new Map([[0, Buffer.from(base.parts.pcrs.get(0)!).toString("hex")]]), allowTestRoot: true } };
}

let bases: Base[];
beforeAll(async () => {
  const gce = await loadGCEEvidence();
  const nonce = Buffer.alloc(32, 0xab);
  const userData = Buffer.alloc(32, 0xcd);
  const soft = (name: string, kind: "rsa-rsassa" | "ecc-p256"): Base => {
    const ak = makeAK(kind);
    const parts = buildEvidence({ ak, nonce, userData, akCertChain: testAKCertChain(ak) });
    return { name, parts, binding: { nonce, userData, requireFresh: true }, text: Buffer.from(encodeDocument(parts)).toString() };
  };
  const gceParts: DocumentParts = { akPublic: gce.akPublic, quote: gce.quote, signature: gce.signature, pcrs: gce.pcrs, userData: Buffer.from("gce"), akCertChain: [new Uint8Array(readFileSync(new URL("ak_cert.der", gceDir)))] };
  bases = [
    soft("software RSA", "rsa-rsassa"),
    soft("software ECC", "ecc-p256"),
    { name: "GCE", parts: gceParts, binding: { userData: Buffer.from("gce"), requireFresh: true }, text: Buffer.from(encodeDocument(gceParts)).toString() },
  ];
});

describe("fuzzing the TPM validator", () => {
  it("every base document is accepted before mutation", async () => {
    for (const b of bases) expect((await createTPMValidator(fuzzPolicy(b)).validate(Buffer.from(b.text), b.binding)).ok, b.name).toBe(true);
  });

  it(`${ITERATIONS} mutated documents: no exception escapes, no undeserved ok (seed ${SEED})`, async () => {
    const validators = new Map(bases.map((b) => [b, createTPMValidator(fuzzPolicy(b))]));
    const firstFailures = new Map<string, number>();
    let neutral = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const r = rng(SEED + i);
      const base = bases[i % bases.length];
      let [doc, desc] = mutate(r, base, bases);
      // Re-draw mutations that changed nothing (a field swapped with itself, a byte set to its value).
      while (Buffer.from(doc).toString("latin1") === Buffer.from(base.text).toString("latin1")) [doc, desc] = mutate(r, base, bases);
      const where = `iteration ${i} (${base.name}): ${desc}`;
      let verdict;
      try {
        verdict = await validators.get(base)!.validate(doc, base.binding);
      } catch (err) {
        throw new Error(`validate threw at ${where}`, { cause: err });
      }
      if (verdict.ok) {
        expect(allowedToPass(base, doc), `undeserved ok at ${where}`).toBe(true);
        neutral++;
      } else {
        const first = verdict.checks.find((c) => c.status === "failed")!.name;
        firstFailures.set(first, (firstFailures.get(first) ?? 0) + 1);
      }
    }
    // The mutations must reach past the parser into every kind of check, or the fuzzer is shallow.
    for (const name of ["format", "ak restricted signing key", "ak anchoring", "signature", "nonce binding", "userData binding", "pcr selection", "pcr digest"]) {
      expect(firstFailures.get(name) ?? 0, `no mutation failed first at ${name}: ${JSON.stringify([...firstFailures])}`).toBeGreaterThan(0);
    }
    // Neutral documents come almost only from free objectAttributes bits (8 of 32 bits, 1 mutation in 7).
    expect(neutral).toBeLessThan(ITERATIONS / 20);
  });

  it("mutated binary fields give the parsers TPMParseError or a parse, never another exception", () => {
    const parsers = { akPublic: parseTPM2BPublic, quote: parseTPMSAttest, signature: parseTPMTSignature } as const;
    for (let i = 0; i < 6000; i++) {
      const r = rng(SEED ^ (0x9e3779b9 + i));
      const base = bases[i % bases.length];
      const field = r.pick(["akPublic", "quote", "signature"] as const);
      const [first, desc] = mutateBytes(r, base.parts[field]);
      const bytes = r.int(4) === 0 ? mutateBytes(r, first)[0] : first;
      try {
        parsers[field](bytes);
      } catch (err) {
        if (!(err instanceof TPMParseError)) throw new Error(`${field} parser threw ${String(err)} at iteration ${i} (${base.name}): ${desc}`, { cause: err });
      }
    }
  });
});
