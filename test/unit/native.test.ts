import { existsSync } from "node:fs";
import { createServer } from "node:net";

import { describe, expect, it } from "vitest";

import {
  addonCandidates,
  loadNative,
  loadNativeFrom,
  NativeError,
  NativeLoadError,
  snpGetExtendedReport,
  snpGetReport,
  Tpm,
} from "../../src/attestation/native.js";
import { SNPDeviceIssuer } from "../../src/attestation/snp-device.js";

// tpm2-tss logs every failure to stderr itself; the errors under test already carry the call and rc.
process.env.TSS2_LOG ??= "all+none";

/** closedPort returns a loopback port nothing listens on (the OS gave it, then it was released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("native loader", () => {
  it("looks in native/build/Release under the package root first", () => {
    expect(addonCandidates()[0]).toMatch(/\/native\/build\/Release\/attested_mesh_native\.node$/);
    expect(addonCandidates("/opt/x.node")[0]).toBe("/opt/x.node");
  });

  it("loads the built addon", () => {
    const addon = loadNative();
    expect(typeof addon.openTpm).toBe("function");
    expect(typeof addon.snpGetReport).toBe("function");
  });

  it("names every path it tried and why each failed", () => {
    const err = (() => {
      try {
        loadNativeFrom(["/nonexistent/attested_mesh_native.node", "/etc/hostname"]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NativeLoadError);
    const e = err as NativeLoadError;
    expect(e.tried.map((t) => t.path)).toEqual(["/nonexistent/attested_mesh_native.node", "/etc/hostname"]);
    expect(e.tried[0].reason).toBe("not found");
    expect(e.message).toContain("/nonexistent/attested_mesh_native.node: not found");
    expect(e.message).toMatch(/\/etc\/hostname: .+/);
    expect(e.message).toContain("npm run build:native");
  });
});

describe("native TPM errors", () => {
  const cases: { name: string; tcti: () => Promise<string>; call: string; text: RegExp }[] = [
    { name: "swtpm port with nothing listening", tcti: async () => `swtpm:host=127.0.0.1,port=${await closedPort()}`, call: "Tss2_TctiLdr_Initialize", text: /rc 0x000a000a \(tcti:IO failure\)/ },
    { name: "unknown TCTI module", tcti: async () => "nosuchtcti:foo", call: "Tss2_TctiLdr_Initialize", text: /rc 0x000a\w{4} \(tcti:/ },
    { name: "missing TPM device", tcti: async () => "device:/dev/nonexistent-tpm", call: "Tss2_TctiLdr_Initialize", text: /rc 0x000a\w{4} \(tcti:/ },
  ];
  for (const tc of cases) {
    it(`open fails clearly: ${tc.name}`, async () => {
      const tcti = await tc.tcti();
      const err = await Tpm.open(tcti).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(NativeError);
      const e = err as NativeError;
      expect(e.call).toBe(tc.call);
      expect(typeof e.rc).toBe("number");
      expect(e.message).toContain(`open TPM ${JSON.stringify(tcti)}: ${tc.call} failed: rc 0x`);
      expect(e.message).toMatch(tc.text);
    });
  }

  it("a TCP I/O failure is marked retryable, an unknown module is not", async () => {
    const io = (await Tpm.open(`swtpm:host=127.0.0.1,port=${await closedPort()}`).catch((e: unknown) => e)) as NativeError;
    expect(io.retryable).toBe(true);
    const mod = (await Tpm.open("nosuchtcti:foo").catch((e: unknown) => e)) as NativeError;
    expect(mod.retryable).toBe(false);
  });

  it("argument errors are TypeErrors from C++", async () => {
    const addon = loadNative();
    expect(() => addon.openTpm(42 as unknown as string)).toThrow(TypeError);
    expect(() => addon.openTpm("")).toThrow(/tcti must not be empty/);
    expect(() => new (addon as unknown as { Tpm: new () => unknown }).Tpm()).toThrow(/use openTpm/);
  });
});

describe("native SEV-SNP errors", () => {
  it.skipIf(existsSync("/dev/sev-guest"))("a missing /dev/sev-guest is an ENOENT error naming the device", async () => {
    const err = (await snpGetReport(new Uint8Array(64)).catch((e: unknown) => e)) as NativeError;
    expect(err).toBeInstanceOf(NativeError);
    expect(err.call).toBe("open /dev/sev-guest");
    expect(err.code).toBe("ENOENT");
    expect(err.errno).toBe(2);
    expect(err.message).toBe("SEV-SNP report: open /dev/sev-guest failed: errno 2 (No such file or directory)");
  });

  it("an ioctl the device does not support reports errno and the firmware/VMM codes, without a crash", async () => {
    const err = (await snpGetReport(new Uint8Array(64), { device: "/dev/null" }).catch((e: unknown) => e)) as NativeError;
    expect(err).toBeInstanceOf(NativeError);
    expect(err.call).toBe("ioctl SNP_GET_REPORT on /dev/null");
    expect(err.code).toBe("ENOTTY");
    expect(err.message).toMatch(/ioctl SNP_GET_REPORT on \/dev\/null failed: errno 25 \(.+\), fw_error 0x00000000, vmm_error 0x00000000/);
    expect(err.fwError).toBe(0);
    const ext = (await snpGetExtendedReport(new Uint8Array(64), { device: "/dev/null" }).catch((e: unknown) => e)) as NativeError;
    expect(ext.call).toBe("ioctl SNP_GET_EXT_REPORT on /dev/null");
  });

  it("argument errors are TypeErrors", async () => {
    await expect(snpGetReport(new Uint8Array(63))).rejects.toThrow(new TypeError("reportData must be 64 bytes, got 63"));
    await expect(snpGetReport(new Uint8Array(64), { vmpl: 4 })).rejects.toThrow(TypeError);
    await expect(snpGetExtendedReport(new Uint8Array(64), { certsLength: 100 })).rejects.toThrow(/multiple of 4096/);
  });

  it.skipIf(existsSync("/dev/sev-guest"))("SNPDeviceIssuer says there is no SEV-SNP guest device", async () => {
    const issuer = new SNPDeviceIssuer();
    expect(issuer.platform).toBe("snp");
    const err = (await issuer.issue(new Uint8Array(32), new Uint8Array(32)).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^issue SEV-SNP attestation: SEV-SNP extended report: open \/dev\/sev-guest failed: errno 2 \(No such file or directory\) \(no SEV-SNP guest device: /);
    expect(err.cause).toBeInstanceOf(NativeError);
  });
});
