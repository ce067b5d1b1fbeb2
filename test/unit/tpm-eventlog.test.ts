import { beforeAll, describe, expect, it } from "vitest";
import { EV_NO_ACTION, compareReplay, parseEventLog, replayEventLog } from "../../src/attestation/tpm-eventlog.js";
import { TPMParseError, TPM_ALG } from "../../src/attestation/tpm-structures.js";
import { loadGCEEvidence, type GCEEvidence } from "../helpers/tpm-builder.js";

let gce: GCEEvidence;
beforeAll(async () => {
  gce = await loadGCEEvidence();
});

const pcrs0to9 = [...Array(10).keys()];

describe("TCG event log of the real GCE VM", () => {
  it("parses the Spec ID event (SHA-1, SHA-256, SHA-384 banks) and every event", () => {
    const log = parseEventLog(gce.eventLog);
    expect(log.specID.specVersion.major).toBe(2);
    expect([...log.specID.digestSizes]).toEqual([
      [TPM_ALG.SHA1, 20],
      [TPM_ALG.SHA256, 32],
      [TPM_ALG.SHA384, 48],
    ]);
    expect(log.events.length).toBeGreaterThan(20);
    expect(log.events.every((e) => e.digests.size === 3)).toBe(true);
  });

  it("replays SHA-256 extends to the quoted PCRs 0-9 (both the .bin and the .txt listing)", () => {
    const replayed = replayEventLog(parseEventLog(gce.eventLog));
    expect(compareReplay(replayed, gce.pcrs, pcrs0to9)).toEqual([]);
    expect(compareReplay(replayed, gce.pcrsText, pcrs0to9)).toEqual([]);
  });

  it("detects a tampered event digest in the PCR it was extended into", () => {
    const log = parseEventLog(gce.eventLog);
    const ev = log.events.find((e) => e.eventType !== EV_NO_ACTION && e.pcrIndex === 4)!;
    ev.digests.get(TPM_ALG.SHA256)![0] ^= 1;
    const diff = compareReplay(replayEventLog(log), gce.pcrs, pcrs0to9);
    expect(diff).toHaveLength(1);
    expect(diff[0]).toMatch(/^PCR 4: log replays to/);
  });

  it("refuses a bank the log does not record", () => {
    expect(() => replayEventLog(parseEventLog(gce.eventLog), TPM_ALG.SHA512)).toThrow(TPMParseError);
  });

  it("reports every truncation as TPMParseError or as a shorter valid log, never another exception", () => {
    const full = parseEventLog(gce.eventLog).events;
    const boundaries = new Set(full.map((e) => e.offset));
    for (let n = 0; n < gce.eventLog.length; n++) {
      try {
        const log = parseEventLog(gce.eventLog.subarray(0, n));
        // Only a cut exactly at an event boundary leaves a valid (shorter) log.
        expect(boundaries.has(n)).toBe(true);
        expect(log.events.length).toBeLessThan(full.length);
      } catch (err) {
        expect(err).toBeInstanceOf(TPMParseError);
      }
    }
  });

  const broken: { name: string; mutate: (b: Uint8Array) => Uint8Array; structure: RegExp }[] = [
    { name: "SHA-1-only log (first event not EV_NO_ACTION)", mutate: (b) => (b.set([1], 4), b), structure: /^TCG_PCClientPCREvent$/ },
    { name: "wrong Spec ID signature", mutate: (b) => (b.set([0x58], 0x20), b), structure: /^TCG_EfiSpecIDEvent$/ },
    { name: "SHA-256 digest size 31 in the Spec ID event", mutate: (b) => (b.set([31], 0x42), b), structure: /^TCG_EfiSpecIDEvent$/ },
    { name: "event size beyond the end", mutate: (b) => (b.set([0xff, 0xff, 0xff, 0x7f], 0xbf), b), structure: /^TCG_PCR_EVENT2\[0\]\.event$/ },
    { name: "unknown algorithm in an event", mutate: (b) => (b.set([0x99, 0x00], 0x55), b), structure: /^TCG_PCR_EVENT2\[0\]\.digests\[0\]\.hashAlg$/ },
  ];
  for (const tc of broken) {
    it(`refuses ${tc.name}`, () => {
      const bytes = tc.mutate(Uint8Array.from(gce.eventLog));
      let err: unknown;
      try {
        parseEventLog(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TPMParseError);
      expect((err as TPMParseError).structure).toMatch(tc.structure);
    });
  }

  it("survives random garbage with TPMParseError only", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 500; i++) {
      const b = Uint8Array.from(gce.eventLog.subarray(0, 400 + (i % 50)));
      for (let k = 0; k < 4; k++) b[rand() * b.length >> 8] = rand();
      try {
        parseEventLog(b);
      } catch (err) {
        expect(err).toBeInstanceOf(TPMParseError);
      }
    }
  });
});
