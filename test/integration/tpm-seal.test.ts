// Sealing to PCRs (native tpmSealPcrs / tpmUnsealPcrs and TPMKeySealer) against swtpm.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { loadNative, NativeError, Tpm } from "../../src/attestation/native.js";
import { bootPCRs, pcrPolicyDigest, sealToPCRs, TPMKeySealer, unsealFromPCRs } from "../../src/attestation/tpm-seal.js";
import { PermissionDeniedError } from "../../src/core/errors.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { caught } from "../helpers/wait.js";

process.env.TSS2_LOG ??= "all+none";

/** sealedPublic reads type, attributes and authPolicy of a TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2.4). */
function sealedPublic(b: Buffer): { type: number; attributes: number; authPolicy: Buffer } {
  const policyLength = b.readUInt16BE(10);
  return { type: b.readUInt16BE(2), attributes: b.readUInt32BE(6), authPolicy: b.subarray(12, 12 + policyLength) };
}

const ATTR = { fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6, noDA: 1 << 10 };

describe("sealing to PCRs (swtpm)", () => {
  let swtpm: Swtpm;
  let other: Swtpm;
  let tpm: Tpm;
  let otherTpm: Tpm;
  beforeAll(async () => {
    [swtpm, other] = await Promise.all([startSwtpm(), startSwtpm()]);
    [tpm, otherTpm] = await Promise.all([Tpm.open(swtpm.tcti), Tpm.open(other.tcti)]);
  });
  afterAll(async () => {
    await tpm?.close();
    await otherTpm?.close();
  });

  it("seal and unseal round-trip, leaving no object or session loaded", async () => {
    const secret = randomBytes(32);
    const blob = await sealToPCRs(tpm, bootPCRs, secret);
    expect(await unsealFromPCRs(tpm, blob, bootPCRs)).toEqual(secret);
    expect(await tpm.flushTransients()).toBe(0);
    const max = randomBytes(128);
    expect(await unsealFromPCRs(tpm, await sealToPCRs(tpm, [7], max), [7])).toEqual(max);
  });

  it("the sealed object is a policy-only keyedhash whose authPolicy is PolicyPCR over the current values", async () => {
    const pcrs = [0, 2, 9];
    await tpm.pcrExtend(2, randomBytes(32));
    const blob = await sealToPCRs(tpm, pcrs, randomBytes(16));
    const pub = sealedPublic(blob.public);
    expect(pub.type).toBe(0x0008); // TPM_ALG_KEYEDHASH
    expect(pub.attributes & ATTR.userWithAuth).toBe(0);
    expect(pub.attributes & ATTR.sensitiveDataOrigin).toBe(0);
    expect(pub.attributes & (ATTR.fixedTPM | ATTR.fixedParent)).toBe(ATTR.fixedTPM | ATTR.fixedParent);
    expect(pub.authPolicy).toEqual(pcrPolicyDigest(await tpm.pcrRead(pcrs)));
  });

  it("unseal fails after a policy PCR is extended, naming the check; a PCR outside the policy does not matter", async () => {
    const sealer = new TPMKeySealer(tpm, [4, 5]);
    const secret = randomBytes(32);
    const sealed = await sealer.seal(secret);
    await tpm.pcrExtend(16, randomBytes(32));
    expect(await sealer.unseal(sealed)).toEqual(secret);
    await tpm.pcrExtend(5, randomBytes(32));
    const raw = await caught(unsealFromPCRs(tpm, { public: Buffer.from(sealed.public, "base64"), private: Buffer.from(sealed.private, "base64") }, [4, 5]));
    expect(raw).toBeInstanceOf(NativeError);
    expect((raw as NativeError).call).toBe("Esys_Unseal");
    const err = await caught(sealer.unseal(sealed));
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toMatch(/check "boot PCRs unchanged" failed: PCRs 4,5/);
    expect(await tpm.flushTransients()).toBe(0); // flushed on failure too
  });

  it("a key sealed by another TPM does not unseal, naming the check", async () => {
    const sealed = await new TPMKeySealer(otherTpm).seal(randomBytes(32));
    const err = await caught(new TPMKeySealer(tpm).unseal(sealed));
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toMatch(/check "sealed by this TPM" failed.*Esys_Load/);
    expect(await tpm.flushTransients()).toBe(0);
  });

  it("an altered private blob does not load, and a truncated one is malformed", async () => {
    const sealer = new TPMKeySealer(tpm);
    const sealed = await sealer.seal(randomBytes(32));
    const priv = Buffer.from(sealed.private, "base64");
    priv[priv.length - 1] ^= 1;
    expect((await caught(sealer.unseal({ ...sealed, private: priv.toString("base64") }))).message).toMatch(/check "sealed by this TPM" failed/);
    const short = priv.subarray(0, 10).toString("base64");
    expect((await caught(sealer.unseal({ ...sealed, private: short }))).message).toMatch(/check "sealed key well-formed" failed/);
  });

  it("a key sealed to other PCRs than the sealer's is refused before the TPM is asked", async () => {
    const sealed = await new TPMKeySealer(tpm, [1]).seal(randomBytes(32));
    expect((await caught(new TPMKeySealer(tpm, [1, 2]).unseal(sealed))).message).toMatch(/sealed to PCRs 1, not 1,2/);
  });

  it("after a reboot (TPM power cycle, same boot PCRs) the key unseals: the storage key is recreated", async () => {
    const sealed = await new TPMKeySealer(otherTpm).seal(Buffer.from("survives a reboot"));
    await otherTpm.close();
    await other.powerOff();
    other = await startSwtpm({ stateDir: other.stateDir });
    otherTpm = await Tpm.open(other.tcti);
    expect((await new TPMKeySealer(otherTpm).unseal(sealed)).toString()).toBe("survives a reboot");
  });

  it("the secret never crosses the TCTI in the clear (sealed and unsealed through encrypted sessions)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "am-seal-pcap-"));
    const pcapFile = join(dir, "tcti.pcap");
    process.env.TCTI_PCAP_FILE = pcapFile; // read by the pcap TCTI when it is initialized
    const sniffed = await Tpm.open(`pcap:${swtpm.tcti}`);
    delete process.env.TCTI_PCAP_FILE;
    try {
      const secret = randomBytes(48);
      const blob = await sealToPCRs(sniffed, [0], secret);
      expect(await unsealFromPCRs(sniffed, blob, [0])).toEqual(secret);
      await sniffed.close();
      const capture = await readFile(pcapFile);
      expect(capture.includes(blob.public.subarray(2)), "the capture holds the traffic").toBe(true);
      expect(capture.includes(secret.subarray(0, 16))).toBe(false);
    } finally {
      await sniffed.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("arguments are checked: sizes, PCR lists, the Tpm", async () => {
    expect(() => new TPMKeySealer(tpm, [0, 11])).toThrow(/activation markers/);
    await expect(sealToPCRs(tpm, bootPCRs, Buffer.alloc(0))).rejects.toThrow(/data must be 1 to 128 bytes/);
    await expect(sealToPCRs(tpm, bootPCRs, Buffer.alloc(129))).rejects.toThrow(/data must be 1 to 128 bytes/);
    await expect(sealToPCRs(tpm, [], Buffer.alloc(1))).rejects.toThrow(/must not be empty/);
    expect(() => loadNative().tpmSealPcrs({} as never, [0], Buffer.alloc(1))).toThrow(/tpm must be a Tpm/);
  });
});
