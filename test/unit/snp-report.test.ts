import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  decodeTcb, encodeTcb, parseSNPReport, reportSignatureP1363, reportVersion, SNPReportError, SNP_REPORT_SIZE, tcbToString,
  unsignedTailIsZero, writeReportSignature, type TcbVersion,
} from "../../src/attestation/snp-report.js";

const EVIDENCE = new URL("../../../shared/evidence/snp/", import.meta.url);
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

interface ExpectedTcb { bootloader: number; tee: number; snp: number; microcode: number; raw_le_u64_hex: string }

describe("parseSNPReport against real evidence (expected.json)", () => {
  for (const folder of ["milan-v2-virtee", "milan-v2-debug"]) {
    it(folder, () => {
      const want = JSON.parse(readFileSync(new URL(`${folder}/expected.json`, EVIDENCE), "utf8")) as Record<string, unknown>;
      const raw = new Uint8Array(readFileSync(new URL(`${folder}/report.bin`, EVIDENCE)));
      const r = parseSNPReport(raw);
      expect(r.version).toBe(want.version);
      expect(r.guestSvn).toBe(want.guest_svn);
      expect(`0x${r.policy.toString(16)}`).toBe(want.policy_hex);
      expect(r.debug).toBe(folder === "milan-v2-debug");
      expect(r.vmpl).toBe(want.vmpl);
      expect(r.signatureAlgo).toBe(want.signature_algo);
      expect(`0x${r.platformInfo.toString(16)}`).toBe(want.platform_info_hex);
      expect(r.signingKey === 0 ? "VCEK" : "other").toBe(want.signing_key);
      expect(Number(r.maskChipKey)).toBe(want.mask_chip_key);
      expect(Number(r.authorKeyEn)).toBe(want.author_key_en);
      for (const [field, key] of [
        ["reportData", "report_data"], ["measurement", "measurement"], ["hostData", "host_data"], ["idKeyDigest", "id_key_digest"],
        ["authorKeyDigest", "author_key_digest"], ["reportId", "report_id"], ["chipId", "chip_id"],
      ] as const) {
        expect(hex(r[field]), field).toBe(want[key]);
      }
      for (const [field, key] of [["currentTcb", "current_tcb"], ["reportedTcb", "reported_tcb"], ["committedTcb", "committed_tcb"], ["launchTcb", "launch_tcb"]] as const) {
        const t = want[key] as ExpectedTcb;
        expect(r[field], field).toEqual({ bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode });
        expect(hex(encodeTcb(r[field], false)), field).toBe(t.raw_le_u64_hex);
      }
      const fw = (v: { major: number; minor: number; build: number }): string => `${v.major}.${v.minor}.${v.build}`;
      expect(fw(r.currentVersion)).toBe(want.current_fw_version);
      expect(fw(r.committedVersion)).toBe(want.committed_fw_version);
      expect(r.cpuidFamId).toBeUndefined();
      expect(r.turin).toBe(false);
      expect(unsignedTailIsZero(raw)).toBe(true);
      expect(reportSignatureP1363(r)).toBeInstanceOf(Uint8Array);
    });
  }
});

describe("parseSNPReport refuses what it cannot read", () => {
  const base = (): Uint8Array => new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE)));
  const cases: { name: string; bytes: () => Uint8Array; error: RegExp }[] = [
    { name: "empty", bytes: () => new Uint8Array(0), error: /0 bytes/ },
    { name: "one byte short", bytes: () => base().subarray(0, SNP_REPORT_SIZE - 1), error: /1183 bytes/ },
    { name: "one byte long", bytes: () => Uint8Array.from([...base(), 0]), error: /1185 bytes/ },
    { name: "version 1", bytes: () => { const b = base(); b[0] = 1; return b; }, error: /version 1 not supported/ },
    { name: "version 6 (unknown layout)", bytes: () => { const b = base(); b[0] = 6; return b; }, error: /version 6 not supported/ },
    { name: "version 2^32-1", bytes: () => { const b = base(); b.fill(0xff, 0, 4); return b; }, error: /not supported/ },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      expect(() => parseSNPReport(tc.bytes())).toThrow(SNPReportError);
      expect(() => parseSNPReport(tc.bytes())).toThrow(tc.error);
    });
  }
  it("reportVersion reads the version of any report-sized buffer", () => {
    const b = base();
    b[0] = 1;
    expect(reportVersion(b)).toBe(1);
  });
});

describe("TCB_VERSION layouts", () => {
  const cases: { name: string; tcb: TcbVersion; turin: boolean; raw: string }[] = [
    { name: "Milan/Genoa", tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }, turin: false, raw: "0300000000000873" },
    { name: "Milan/Genoa high values", tcb: { bootloader: 255, tee: 1, snp: 2, microcode: 254 }, turin: false, raw: "ff010000000002fe" },
    { name: "Turin", tcb: { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 }, turin: true, raw: "0102030400000005" },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      expect(hex(encodeTcb(tc.tcb, tc.turin))).toBe(tc.raw);
      expect(decodeTcb(Buffer.from(tc.raw, "hex"), tc.turin)).toEqual(tc.tcb);
    });
  }
  it("a version-3 report with CPUID family 0x1A uses the Turin layout", () => {
    const b = new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE)));
    b[0] = 3;
    b[0x188] = 0x1a;
    b.set(encodeTcb({ fmc: 9, bootloader: 1, tee: 2, snp: 3, microcode: 4 }, true), 0x180);
    const r = parseSNPReport(b);
    expect(r.turin).toBe(true);
    expect(r.cpuidFamId).toBe(0x1a);
    expect(r.reportedTcb).toEqual({ fmc: 9, bootloader: 1, tee: 2, snp: 3, microcode: 4 });
    expect(tcbToString(r.reportedTcb)).toBe("fmc=9 bootloader=1 tee=2 snp=3 microcode=4");
  });
});

describe("signature encoding", () => {
  it("writeReportSignature and reportSignatureP1363 are inverse", () => {
    const b = new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE)));
    const sig = reportSignatureP1363(parseSNPReport(b)) as Uint8Array;
    const copy = new Uint8Array(b);
    copy.fill(0, 0x2a0, 0x330);
    writeReportSignature(copy, sig);
    expect(hex(copy)).toBe(hex(b));
  });
  for (const [name, offset] of [["R", 0x2a0 + 48], ["S", 0x2e8 + 71]] as const) {
    it(`a nonzero byte above 48 in ${name} is refused`, () => {
      const b = new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE)));
      b[offset] = 1;
      expect(reportSignatureP1363(parseSNPReport(b))).toBe(`signature ${name} does not fit in 48 bytes`);
    });
  }
  it("a nonzero reserved byte after the signature is seen", () => {
    const b = new Uint8Array(readFileSync(new URL("milan-v2-virtee/report.bin", EVIDENCE)));
    b[SNP_REPORT_SIZE - 1] = 1;
    expect(unsignedTailIsZero(b)).toBe(false);
  });
});
