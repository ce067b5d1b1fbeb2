import { createHash, randomBytes } from "node:crypto";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { FailedPreconditionError } from "../../src/core/errors.js";
import { loadNative, NativeError, Tpm } from "../../src/attestation/native.js";
import { openTPM, quoteExtraData, TPMIssuer } from "../../src/attestation/tpm-issuer.js";
import { markerPCRValue, TPMMarker } from "../../src/attestation/tpm-marker.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

// tpm2-tss logs every failure to stderr itself; the errors under test already carry the call and rc.
process.env.TSS2_LOG ??= "all+none";

const sha256 = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash("sha256")).digest();

/** publicHeader reads type, nameAlg and objectAttributes from a TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2.5). */
function publicHeader(b: Buffer): { size: number; type: number; nameAlg: number; attributes: number } {
  return { size: b.readUInt16BE(0), type: b.readUInt16BE(2), nameAlg: b.readUInt16BE(4), attributes: b.readUInt32BE(6) };
}

const ATTR = { fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6, restricted: 1 << 16, decrypt: 1 << 17, sign: 1 << 18 };

/** pcrDigestOf returns the pcrDigest, the last TPM2B of a quote's TPMS_ATTEST (32 bytes for SHA-256). */
const pcrDigestOf = (quote: Buffer) => quote.subarray(quote.length - 32);

async function toolsPCRRead(s: Swtpm, sel: string): Promise<string> {
  return (await execa("tpm2_pcrread", [sel], { env: { TPM2TOOLS_TCTI: s.tcti } })).stdout;
}

describe("native Tpm over swtpm", () => {
  let swtpm: Swtpm;
  let tpm: Tpm;
  beforeAll(async () => {
    swtpm = await startSwtpm();
    tpm = await Tpm.open(swtpm.tcti);
  });
  afterAll(async () => {
    await tpm?.close();
    await swtpm?.stop();
  });

  const akCases = [
    { type: "ecc", hierarchy: "endorsement", tpmAlg: 0x0023 },
    { type: "ecc", hierarchy: "owner", tpmAlg: 0x0023 },
    { type: "rsa", hierarchy: "endorsement", tpmAlg: 0x0001 },
  ] as const;
  for (const tc of akCases) {
    it(`createAK ${tc.type}/${tc.hierarchy} is a restricted signing primary, the same key each time`, async () => {
      const a = await tpm.createAK({ type: tc.type, hierarchy: tc.hierarchy });
      const b = await tpm.createAK({ type: tc.type, hierarchy: tc.hierarchy });
      try {
        const h = publicHeader(a.public);
        expect(h.size).toBe(a.public.length - 2);
        expect(h.type).toBe(tc.tpmAlg);
        expect(h.nameAlg).toBe(0x000b);
        const want = ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.userWithAuth | ATTR.restricted | ATTR.sign;
        expect(h.attributes).toBe(want);
        expect(h.attributes & ATTR.decrypt).toBe(0);
        expect(b.public).toEqual(a.public);
      } finally {
        await tpm.flush(a.handle);
        await tpm.flush(b.handle);
      }
    });
  }

  it("pcrRead reads all 24 SHA-256 PCRs, as tpm2_pcrread does", async () => {
    const values = await tpm.pcrRead(Array.from({ length: 24 }, (_, i) => i));
    expect([...values.keys()]).toEqual(Array.from({ length: 24 }, (_, i) => i));
    for (const v of values.values()) expect(v.length).toBe(32);
    const tools = await toolsPCRRead(swtpm, "sha256:0,7,16");
    for (const i of [0, 7, 16]) expect(tools).toContain(`0x${values.get(i)!.toString("hex").toUpperCase()}`);
  });

  it("pcrExtend and pcrEvent extend as TPM 2.0 specifies", async () => {
    const before = await tpm.pcrRead([16, 23]);
    const digest = randomBytes(32);
    const data = Buffer.from("event data");
    await tpm.pcrExtend(16, digest);
    await tpm.pcrEvent(23, data);
    const after = await tpm.pcrRead([16, 23]);
    expect(after.get(16)).toEqual(sha256(before.get(16)!, digest));
    expect(after.get(23)).toEqual(sha256(before.get(23)!, sha256(data)));
  });

  it("quote signs the SHA-256 PCR digest and the extraData", async () => {
    const ak = await tpm.createAK();
    try {
      const extra = randomBytes(32);
      const q = await tpm.quote(ak.handle, [0, 11, 12], extra);
      expect(q.quote.readUInt32BE(0)).toBe(0xff544347); // TPM_GENERATED_VALUE
      expect(q.quote.readUInt16BE(4)).toBe(0x8018); // TPM_ST_ATTEST_QUOTE
      expect(q.quote.includes(Buffer.concat([Buffer.from([0, 32]), extra]))).toBe(true);
      const pcrs = await tpm.pcrRead([0, 11, 12]);
      expect(pcrDigestOf(q.quote)).toEqual(sha256(pcrs.get(0)!, pcrs.get(11)!, pcrs.get(12)!));
      expect(q.signature.readUInt16BE(0)).toBe(0x0018); // TPM_ALG_ECDSA
    } finally {
      await tpm.flush(ak.handle);
    }
  });

  it("a failing TSS call names the call and its rc", async () => {
    const ak = await tpm.createAK();
    await tpm.flush(ak.handle);
    const err = (await tpm.quote(ak.handle, [0], Buffer.alloc(32)).catch((e: unknown) => e)) as NativeError;
    expect(err).toBeInstanceOf(NativeError);
    expect(err.call).toBe("Esys_Quote");
    expect(err.message).toMatch(/^tpm quote: Esys_Quote failed: rc 0x[0-9a-f]{8} \(.+\)$/);
    await expect(tpm.pcrExtend(24, Buffer.alloc(32))).rejects.toThrow(TypeError);
    await expect(tpm.pcrExtend(1, Buffer.alloc(31))).rejects.toThrow("digest must be 32 bytes, got 31");
    await expect(tpm.quote(ak.handle, [3, 3], Buffer.alloc(0))).rejects.toThrow("pcrs lists PCR 3 twice");
  });

  it("TPM calls do not block the event loop", async () => {
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 1);
    const start = performance.now();
    const ak = await tpm.createAK({ type: "rsa" }); // RSA key generation: the slowest TPM call
    const quotes = await Promise.all(Array.from({ length: 20 }, () => tpm.quote(ak.handle, [0, 1, 2, 3, 4, 5, 6, 7], randomBytes(32))));
    const elapsed = performance.now() - start;
    clearInterval(timer);
    await tpm.flush(ak.handle);
    expect(quotes).toHaveLength(20);
    // Had a call run on the main thread, no tick could happen while it ran.
    expect(ticks).toBeGreaterThan(10);
    expect(maxGap).toBeLessThan(Math.max(50, elapsed / 4));
  });

  it("the addon itself serializes concurrent calls on one context (without the TypeScript queue)", async () => {
    const raw = await loadNative().openTpm(swtpm.tcti);
    try {
      const ak = await raw.createAK("ecc", "endorsement");
      const results = await Promise.all([
        ...Array.from({ length: 10 }, () => raw.quote(ak.handle, [0, 1], randomBytes(32))),
        ...Array.from({ length: 10 }, () => raw.pcrRead([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
      ]);
      expect(results).toHaveLength(20);
      await raw.flush(ak.handle);
    } finally {
      await raw.close();
    }
  });

  it("close waits for queued calls, then refuses new ones", async () => {
    const s = await startSwtpm();
    const t = await Tpm.open(s.tcti);
    const read = t.pcrRead([0]);
    await t.close();
    await expect(read).resolves.toBeInstanceOf(Map);
    await expect(t.pcrRead([0])).rejects.toThrow("tpm pcrRead: Tpm.pcrRead: the Tpm is closed");
    await t.close();
    await s.stop();
  });
});

describe("TPMMarker", () => {
  const ownerID = randomBytes(32);
  const clusterID = randomBytes(32);

  it("goes fresh → inconsistent → activated as PCRs 11 and 12 are extended", async () => {
    const s = await startSwtpm();
    const tpm = await Tpm.open(s.tcti);
    try {
      const marker = new TPMMarker(tpm);
      expect(await marker.read()).toEqual({ kind: "fresh" });
      await tpm.pcrEvent(11, ownerID);
      const half = await marker.read();
      expect(half.kind).toBe("inconsistent");
      expect(half.kind === "inconsistent" && half.detail).toMatch(/^PCR 11 \(owner\) is extended but PCR 12 \(cluster\) is zero/);
      await expect(marker.mark(ownerID, clusterID)).rejects.toBeInstanceOf(FailedPreconditionError);
      await tpm.pcrEvent(12, clusterID);
      expect((await marker.read()).kind).toBe("activated");
    } finally {
      await tpm.close();
      await s.stop();
    }
  });

  it("mark extends PCR 11 with the owner ID and PCR 12 with the cluster ID in every bank, once", async () => {
    const s = await startSwtpm();
    const tpm = await Tpm.open(s.tcti);
    try {
      const marker = new TPMMarker(tpm);
      await marker.mark(ownerID, clusterID);
      expect(await marker.read()).toEqual({ kind: "activated", ownerMeasurement: markerPCRValue(ownerID), clusterMeasurement: markerPCRValue(clusterID) });
      await expect(marker.mark(ownerID, clusterID)).rejects.toThrow("mark TPM: the marker is already activated; a peer is marked only once");
      await expect(marker.mark(ownerID.subarray(1), clusterID)).rejects.toThrow(RangeError);
      // tpm2-tools see the same values, and no bank (SHA-1 included) still reads zero.
      const tools = await toolsPCRRead(s, "sha1:11,12+sha256:11,12");
      expect(tools).toContain(`11: 0x${markerPCRValue(ownerID).toString("hex").toUpperCase()}`);
      expect(tools).not.toMatch(/: 0x0{40}\b/);
    } finally {
      await tpm.close();
      await s.stop();
    }
  });

  it("markerPCRValue is what tpm2_pcrevent produces", async () => {
    const s = await startSwtpm();
    try {
      const file = `${s.stateDir}/owner.bin`;
      await execa("sh", ["-c", `printf '%s' "$1" | xxd -r -p > "$2"`, "sh", ownerID.toString("hex"), file]);
      await execa("tpm2_pcrevent", ["11", file], { env: { TPM2TOOLS_TCTI: s.tcti } });
      expect(await toolsPCRRead(s, "sha256:11")).toContain(`0x${markerPCRValue(ownerID).toString("hex").toUpperCase()}`);
    } finally {
      await s.stop();
    }
  });
});

describe("TPMIssuer", () => {
  let swtpm: Swtpm;
  let issuer: TPMIssuer;
  beforeAll(async () => {
    swtpm = await startSwtpm();
    issuer = await openTPM(swtpm.tcti);
  });
  afterAll(async () => {
    await issuer?.close();
    await swtpm?.stop();
  });

  it("issues the DESIGN.md tpm document", async () => {
    expect(issuer.platform).toBe("tpm");
    expect(issuer.oid).toBe("2.25.253605056268324015777377207452082665588");
    const nonce = randomBytes(32);
    const userData = randomBytes(32);
    const doc = JSON.parse(new TextDecoder().decode(await issuer.issue(nonce, userData)));
    expect(Object.keys(doc).sort()).toEqual(["akCertChain", "akPublic", "pcrs", "quote", "signature", "userData"]);
    expect(doc.akCertChain).toHaveLength(1);
    expect(Buffer.from(doc.akPublic, "base64")).toEqual(issuer.akPublic);
    expect(Buffer.from(doc.userData, "base64")).toEqual(userData);
    expect(Object.keys(doc.pcrs)).toEqual(["sha256"]);
    expect(Object.keys(doc.pcrs.sha256)).toEqual(Array.from({ length: 24 }, (_, i) => String(i)));
    for (const v of Object.values(doc.pcrs.sha256)) expect(v).toMatch(/^[0-9a-f]{64}$/);
    const quote = Buffer.from(doc.quote, "base64");
    expect(quote.includes(Buffer.concat([Buffer.from([0, 32]), quoteExtraData(nonce, userData)]))).toBe(true);
    expect(quoteExtraData(nonce, userData)).toEqual(sha256(nonce, userData));
    const values = Object.values(doc.pcrs.sha256 as Record<string, string>).map((h) => Buffer.from(h, "hex"));
    expect(pcrDigestOf(quote)).toEqual(sha256(...values));
  });

  it("re-quotes when a PCR changes between the quote and the read (regression: listed PCRs must match the signed digest)", async () => {
    const tpm = issuer.tpm;
    const pending = issuer.issue(randomBytes(32), randomBytes(32));
    void tpm.pcrExtend(16, randomBytes(32)); // queued between issue's quote and its PCR read
    const doc = JSON.parse(new TextDecoder().decode(await pending));
    const values = Object.values(doc.pcrs.sha256 as Record<string, string>).map((h) => Buffer.from(h, "hex"));
    expect(pcrDigestOf(Buffer.from(doc.quote, "base64"))).toEqual(sha256(...values));

    const strict = await TPMIssuer.create(tpm, { maxAttempts: 1 });
    try {
      const failing = strict.issue(randomBytes(32), randomBytes(32));
      void tpm.pcrExtend(16, randomBytes(32));
      await expect(failing).rejects.toThrow("issue TPM attestation: PCRs changed during each of 1 quotes");
    } finally {
      await strict.close();
    }
  });

  it("concurrent issues each produce a consistent document", async () => {
    const docs = await Promise.all(Array.from({ length: 8 }, () => issuer.issue(randomBytes(32), randomBytes(32))));
    for (const d of docs) {
      const doc = JSON.parse(new TextDecoder().decode(d));
      const values = Object.values(doc.pcrs.sha256 as Record<string, string>).map((h) => Buffer.from(h, "hex"));
      expect(pcrDigestOf(Buffer.from(doc.quote, "base64"))).toEqual(sha256(...values));
    }
  });

  it("a custom PCR selection must include 11 and 12", async () => {
    await expect(TPMIssuer.create(issuer.tpm, { pcrs: [0, 11] })).rejects.toThrow("pcrs must include 11 and 12");
    const small = await TPMIssuer.create(issuer.tpm, { pcrs: [12, 11, 0] });
    try {
      const doc = JSON.parse(new TextDecoder().decode(await small.issue(randomBytes(32), new Uint8Array(0))));
      expect(Object.keys(doc.pcrs.sha256)).toEqual(["0", "11", "12"]);
      expect(doc.userData).toBe("");
    } finally {
      await small.close();
    }
  });

  it("openTPM recovers when leaked transient objects fill the TPM (swtpm has no resource manager)", async () => {
    const s = await startSwtpm();
    try {
      const leaker = await Tpm.open(s.tcti);
      for (let i = 0; i < 3; i++) await leaker.createAK(); // never flushed, like a crashed meshd
      await expect(leaker.createAK()).rejects.toMatchObject({ rc: 0x902 });
      await leaker.close();
      const fresh = await openTPM(s.tcti);
      expect((await fresh.issue(randomBytes(32), randomBytes(32))).length).toBeGreaterThan(0);
      await fresh.close();
    } finally {
      await s.stop();
    }
  });

  it("openTPM fails clearly when the TPM is unreachable", async () => {
    const s = await startSwtpm();
    await s.stop();
    await expect(openTPM(s.tcti)).rejects.toThrow(`open TPM "${s.tcti}": Tss2_TctiLdr_Initialize failed: rc 0x000a000a (tcti:IO failure)`);
  });
});
