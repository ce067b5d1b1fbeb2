import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { certificatesFromTable, certTableGUIDs, loadCertDir, parseCertTable } from "../../src/attestation/snp-device.js";

/** table builds a GHCB certificate table: entries then an all-zero terminator, then the blobs. */
function table(entries: { guid: string; data: Buffer }[], opts: { mixedEndian?: boolean; padTo?: number } = {}): Buffer {
  const header = 24 * (entries.length + 1);
  const parts: Buffer[] = [];
  let offset = header;
  for (const e of entries) {
    let g = Buffer.from(e.guid.replace(/-/g, ""), "hex");
    if (opts.mixedEndian) g = Buffer.concat([g.subarray(0, 4).reverse(), g.subarray(4, 6).reverse(), g.subarray(6, 8).reverse(), g.subarray(8)]);
    const ol = Buffer.alloc(8);
    ol.writeUInt32LE(offset, 0);
    ol.writeUInt32LE(e.data.length, 4);
    parts.push(g, ol);
    offset += e.data.length;
  }
  parts.push(Buffer.alloc(24), ...entries.map((e) => e.data));
  const out = Buffer.concat(parts);
  return opts.padTo ? Buffer.concat([out, Buffer.alloc(opts.padTo - out.length)]) : out;
}

const vcek = Buffer.from("vcek-der");
const ask = Buffer.from("ask-der!");
const ark = Buffer.from("ark-der!!");

describe("SEV-SNP certificate table", () => {
  const cases = [
    { name: "RFC 4122 byte order", mixedEndian: false },
    { name: "EFI mixed-endian byte order", mixedEndian: true },
  ];
  for (const tc of cases) {
    it(`finds VCEK, ASK and ARK (${tc.name})`, () => {
      const t = table(
        [
          { guid: certTableGUIDs.ark, data: ark },
          { guid: certTableGUIDs.ask, data: ask },
          { guid: certTableGUIDs.vcek, data: vcek },
        ],
        { mixedEndian: tc.mixedEndian, padTo: 4096 },
      );
      const certs = certificatesFromTable(t);
      expect(Buffer.from(certs.vcek)).toEqual(vcek);
      expect(Buffer.from(certs.ask)).toEqual(ask);
      expect(Buffer.from(certs.ark)).toEqual(ark);
    });
  }

  it("an empty (all-zero) table names what is missing and where to get it", () => {
    expect(parseCertTable(Buffer.alloc(4096)).size).toBe(0);
    expect(() => certificatesFromTable(Buffer.alloc(4096))).toThrow(/lacks VCEK, ASK, ARK; fetch them from AMD's KDS into a certificate directory \(certDir\)/);
  });

  it("a VLEK-only host is called out", () => {
    const t = table([{ guid: certTableGUIDs.vlek, data: vcek }, { guid: certTableGUIDs.ask, data: ask }, { guid: certTableGUIDs.ark, data: ark }]);
    expect(() => certificatesFromTable(t)).toThrow(/lacks VCEK \(the host provides a VLEK, which is not supported\)/);
  });

  it("an entry pointing outside the buffer is refused", () => {
    const t = table([{ guid: certTableGUIDs.vcek, data: vcek }]);
    t.writeUInt32LE(10_000, 16);
    expect(() => parseCertTable(t)).toThrow(/outside the table/);
  });

  it("a table without terminator is refused", () => {
    const t = table([{ guid: certTableGUIDs.vcek, data: vcek }]);
    const withoutTerminator = Buffer.concat([t.subarray(0, 24), t.subarray(48)]);
    withoutTerminator.writeUInt32LE(24, 16);
    expect(() => parseCertTable(withoutTerminator)).toThrow(/no terminating all-zero entry/);
  });
});

describe("SEV-SNP certificate directory", () => {
  let dir: string;
  const pems: Record<string, string> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snp-certs-"));
    for (const name of ["vcek", "ask", "ark"]) {
      await execa("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.pem.src`), "-subj", `/CN=${name}`, "-days", "1"]);
      pems[name] = (await execa("cat", [join(dir, `${name}.pem.src`)])).stdout;
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const der = (name: string) => new X509Certificate(pems[name]).raw;

  it("reads vcek.der and cert_chain.pem (ASK then ARK, as AMD's KDS serves them)", async () => {
    const d = await mkdtemp(join(dir, "kds-"));
    await writeFile(join(d, "vcek.der"), der("vcek"));
    await writeFile(join(d, "cert_chain.pem"), `${pems.ask}\n${pems.ark}\n`);
    const certs = await loadCertDir(d);
    expect(Buffer.from(certs.vcek)).toEqual(der("vcek"));
    expect(Buffer.from(certs.ask)).toEqual(der("ask"));
    expect(Buffer.from(certs.ark)).toEqual(der("ark"));
  });

  it("reads separate PEM files", async () => {
    const d = await mkdtemp(join(dir, "pem-"));
    for (const n of ["vcek", "ask", "ark"]) await writeFile(join(d, `${n}.pem`), pems[n]);
    const certs = await loadCertDir(d);
    expect(Buffer.from(certs.ark)).toEqual(der("ark"));
  });

  it("names the directory and what is missing", async () => {
    const d = await mkdtemp(join(dir, "partial-"));
    await writeFile(join(d, "vcek.pem"), pems.vcek);
    await expect(loadCertDir(d)).rejects.toThrow(`SEV-SNP certificates in ${d}: no cert_chain.pem, and no ask.{der,pem} and ark.{der,pem}`);
    await expect(loadCertDir(join(dir, "nope"))).rejects.toThrow(/no vcek.der or vcek.pem/);
  });
});
