import { X509Certificate } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/meshctl.js";

const evidence = join(process.cwd(), "..", "shared", "evidence");

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

function pemBlocks(text: string): Buffer[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]).raw);
}

describe("meshctl", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-cli-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("--help lists every command; each command has its own --help", async () => {
    const top = await run("--help");
    expect(top.code).toBe(0);
    for (const c of ["activate", "add-nodes", "add-coordinators", "remove-node", "remove-coordinator", "recover", "verify", "measurements", "status", "peers", "admin-config", "evidence"]) {
      expect(top.out).toContain(c);
      const h = await run(c, "--help");
      expect(h.code).toBe(0);
      expect(h.out).toMatch(/^Usage: meshctl /);
    }
  });

  const policyFile = join(tmpdir(), `am-cli-policy-${process.pid}.json`);
  beforeAll(async () => {
    await writeFile(policyFile, JSON.stringify({ tpm: { pcrs: { "0": "00".repeat(32) }, allowTestRoot: true } }));
  });
  afterAll(async () => rm(policyFile, { force: true }));
  const M = ["--measurements", policyFile];

  const usage = [
    { name: "no command", argv: [], code: 2, err: "" },
    { name: "unknown command", argv: ["launch"], code: 2, err: 'unknown command "launch"' },
    { name: "unknown flag", argv: ["activate", "--coordnator", "x"], code: 2, err: "Unknown option '--coordnator'" },
    { name: "missing --coordinator", argv: ["activate", "--master-secret", "/nonexistent"], code: 2, err: "--coordinator is required" },
    { name: "bad endpoint", argv: ["activate", "--coordinator", "1.2.3.4:99999", "--master-secret", "x", ...M], code: 1, err: "--coordinator: port must be 1-65535" },
    { name: "missing secret file", argv: ["activate", "--coordinator", "127.0.0.1", "--master-secret", "/nonexistent/secret", ...M], code: 1, err: "master secret file /nonexistent/secret: ENOENT" },
    // No "skipped means fine": without a policy nothing is trusted, and the message says how to get one.
    { name: "activate without --measurements", argv: ["activate", "--coordinator", "127.0.0.1", "--master-secret", "x"], code: 2, err: "--measurements is required: no peer is trusted without a measurement policy; get one with `meshctl measurements --from ENDPOINT" },
    { name: "add-nodes without --measurements", argv: ["add-nodes", "--coordinator", "127.0.0.1", "--nodes", "127.0.0.2"], code: 2, err: "meshctl measurements --from ENDPOINT" },
    { name: "verify without --measurements", argv: ["verify", "--endpoint", "127.0.0.1"], code: 2, err: "meshctl measurements --from ENDPOINT" },
    { name: "evidence verify without --measurements", argv: ["evidence", "verify", "/nonexistent"], code: 2, err: "meshctl measurements --from ENDPOINT" },
    { name: "measurements without --from", argv: ["measurements"], code: 2, err: "--from is required" },
    { name: "an empty policy file", argv: ["verify", "--endpoint", "127.0.0.1", "--measurements", "/dev/null"], code: 1, err: "not JSON" },
    { name: "add-nodes without nodes", argv: ["add-nodes", "--coordinator", "127.0.0.1"], code: 2, err: "--nodes is required" },
    { name: "remove-node without vpn-ip", argv: ["remove-node", "--coordinator", "127.0.0.1"], code: 2, err: "--vpn-ip is required" },
    { name: "remove-node with a bad vpn-ip", argv: ["remove-node", "--coordinator", "127.0.0.1", "--vpn-ip", "10.118.0"], code: 2, err: "--vpn-ip: not an IP address" },
    { name: "remove-node without an admin key", argv: ["remove-node", "--coordinator", "127.0.0.1", "--vpn-ip", "10.118.0.12", "--admin-dir", "/nonexistent", ...M], code: 1, err: "admin key /nonexistent/admin.key: not found" },
    { name: "recover without --endpoint", argv: ["recover", "--master-secret", "x"], code: 2, err: "--endpoint is required" },
    { name: "recover without --master-secret", argv: ["recover", "--endpoint", "127.0.0.1", "--admin-dir", "/nonexistent"], code: 1, err: "/nonexistent/admin.json: not found (meshctl recover reads the admin.json" },
    { name: "recover without --measurements", argv: ["recover", "--endpoint", "127.0.0.1", "--master-secret", "/nonexistent/s", "--admin-dir", "/nonexistent"], code: 1, err: "admin.json: not found" },
    { name: "recover with a bad endpoint", argv: ["recover", "--endpoint", "127.0.0.1:0", "--master-secret", "x", ...M], code: 1, err: "--endpoint: port must be 1-65535" },
    { name: "evidence without verb", argv: ["evidence", "x"], code: 2, err: "expected: evidence verify FILE" },
  ];
  for (const tc of usage) {
    it(`${tc.name} → exit ${tc.code} with one clear line`, async () => {
      const r = await run(...tc.argv);
      expect(r.code).toBe(tc.code);
      expect(r.err).toContain(tc.err);
      expect(r.err.split("\n").length).toBeLessThanOrEqual(1);
    });
  }

  it("recover checks admin.json and the master secret before contacting anyone", async () => {
    const adminDir = join(dir, "recover-admin");
    await (await import("node:fs/promises")).mkdir(adminDir, { recursive: true });
    await writeFile(join(adminDir, "admin.json"), JSON.stringify({ ownerId: "zz", clusterId: "00".repeat(32) }));
    const bad = await run("recover", "--endpoint", "127.0.0.1:1", "--master-secret", "x", "--admin-dir", adminDir, ...M);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("ownerId must be 64 lower-case hex characters");
    await writeFile(join(adminDir, "admin.json"), JSON.stringify({ ownerId: "11".repeat(32), clusterId: "00".repeat(32) }));
    const secret = join(dir, "recover-secret");
    await writeFile(secret, "0123456789abcdef0123456789abcdef", { mode: 0o600 });
    const other = await run("recover", "--endpoint", "127.0.0.1:1", "--master-secret", secret, "--admin-dir", adminDir, ...M);
    expect(other.code).toBe(1);
    expect(other.err).toContain("it is not the secret of the cluster in");
    expect(other.err).toContain("nothing was sent");
    expect(other.err).not.toContain("0123456789abcdef");
  });

  it("a master secret of the wrong size is refused without printing it", async () => {
    const f = join(dir, "short-secret");
    await writeFile(f, "tooshort", { mode: 0o600 });
    const r = await run("activate", "--coordinator", "127.0.0.1:1", "--master-secret", f, ...M);
    expect(r.code).toBe(1);
    expect(r.err).toContain("must hold 16 to 64 bytes, holds 8");
    expect(r.err).not.toContain("tooshort");
  });

  it("refuses to overwrite an existing wg0.conf before contacting anyone", async () => {
    const out = join(dir, "out");
    await rm(out, { recursive: true, force: true });
    await (await import("node:fs/promises")).mkdir(out);
    await writeFile(join(out, "wg0.conf"), "keep me");
    const secret = join(dir, "secret");
    await writeFile(secret, "0123456789abcdef0123456789abcdef");
    await chmod(secret, 0o600);
    const r = await run("activate", "--coordinator", "127.0.0.1:1", "--master-secret", secret, "--out", out, ...M);
    expect(r.code).toBe(1);
    expect(r.err).toContain("wg0.conf already exists");
    expect(await readFile(join(out, "wg0.conf"), "utf8")).toBe("keep me");
  });

  it("verify against nothing listening says so in one line", async () => {
    const r = await run("verify", "--endpoint", "127.0.0.1:1", ...M);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/aTLS: connect to 127.0.0.1:1: connection refused/);
  });

  describe("evidence verify on real hardware evidence", () => {
    let gce: string;
    let milan: string;
    let milanDebug: string;
    let gcePolicy: string;
    let milanPolicy: string;
    beforeAll(async () => {
      const g = join(evidence, "tpm", "gce-cos85");
      const tpmt = await readFile(join(g, "ak_pub_tpmt_public.bin"));
      const size = Buffer.alloc(2);
      size.writeUInt16BE(tpmt.length);
      const pcrs: Record<string, string> = {};
      for (const line of (await readFile(join(g, "quote1_sha256_pcrs.txt"), "utf8")).trim().split("\n")) {
        const [i, v] = line.split(":").map((x) => x.trim());
        pcrs[i] = v!;
      }
      gce = join(dir, "gce.json");
      await writeFile(
        gce,
        JSON.stringify({
          akPublic: Buffer.concat([size, tpmt]).toString("base64"),
          quote: (await readFile(join(g, "quote1_sha256_attest.bin"))).toString("base64"),
          signature: (await readFile(join(g, "quote1_sha256_sig_tpmt.bin"))).toString("base64"),
          pcrs: { sha256: pcrs },
          userData: Buffer.alloc(32).toString("base64"),
          akCertChain: [(await readFile(join(g, "ak_cert.der"))).toString("base64")],
        }),
      );
      gcePolicy = join(dir, "gce-policy.json");
      await writeFile(gcePolicy, JSON.stringify({ tpm: { pcrs: { "0": pcrs["0"], "7": pcrs["7"] } } }));
      milanPolicy = join(dir, "milan-policy.json");
      await writeFile(milanPolicy, JSON.stringify({ snp: { measurement: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f" } }));
      const snpDoc = async (folder: string, chainFile: string) =>
        JSON.stringify({
          report: (await readFile(join(evidence, "snp", folder, "report.bin"))).toString("base64"),
          vcek: (await readFile(join(evidence, "snp", folder, "vcek.der"))).toString("base64"),
          certChain: pemBlocks(await readFile(join(evidence, "snp", folder, chainFile), "utf8")).map((c) => c.toString("base64")),
          userData: Buffer.alloc(32).toString("base64"),
        });
      milan = join(dir, "milan.json");
      await writeFile(milan, await snpDoc("milan-v2-virtee", "cert_chain_milan.pem"));
      milanDebug = join(dir, "milan-debug.json");
      await writeFile(milanDebug, await snpDoc("milan-v2-debug", "ask_ark_milan.pem"));
    });

    it("the GCE vTPM quote verifies to Google's root; binding checks are skipped, not passed", async () => {
      const r = await run("evidence", "verify", gce, "--measurements", gcePolicy);
      expect(r.code, r.out + r.err).toBe(0);
      expect(r.out).toMatch(/platform: tpm/);
      expect(r.out).toMatch(/root: +Google EK\/AK CA/);
      expect(r.out).toMatch(/ak anchoring\s+passed/);
      expect(r.out).toMatch(/signature\s+passed/);
      expect(r.out).toMatch(/nonce binding\s+skipped/);
      expect(r.out).toMatch(/pcr digest\s+passed/);
    });

    it("the GCE quote does not bind our nonce: with --nonce the binding fails and the exit is 1", async () => {
      const r = await run("evidence", "verify", gce, "--nonce", "00".repeat(32), "--user-data", "00".repeat(32), "--measurements", gcePolicy);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/nonce binding\s+failed/);
    });

    it("the real Milan report verifies through the pinned ARK-Milan (JSON output)", async () => {
      const r = await run("evidence", "verify", milan, "--json", "--measurements", milanPolicy);
      expect(r.code, r.out + r.err).toBe(0);
      const v = JSON.parse(r.out);
      expect(v.platform).toBe("snp");
      expect(v.checks.find((c: { name: string }) => c.name === "cert chain").status).toBe("passed");
      expect(v.facts.measurement).toMatch(/^7a1e5c26/);
    });

    it("the debug report is rejected by the default policy and accepted when the policy allows debug", async () => {
      const strict = join(dir, "debug-measurement.json");
      await writeFile(strict, JSON.stringify({ snp: { measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01" } }));
      const denied = await run("evidence", "verify", milanDebug, "--measurements", strict);
      expect(denied.code).toBe(1);
      expect(denied.out).toMatch(/debug\s+failed/);
      const policy = join(dir, "allow-debug.json");
      await writeFile(policy, JSON.stringify({ snp: { allowDebug: true, measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01" } }));
      const allowed = await run("evidence", "verify", milanDebug, "--measurements", policy);
      expect(allowed.code, allowed.out).toBe(0);
    });

    it("a policy file with a bad field is refused naming the field", async () => {
      const policy = join(dir, "bad-policy.json");
      await writeFile(policy, JSON.stringify({ tpm: { pcrs: { "11": "zz" } } }));
      const r = await run("evidence", "verify", gce, "--measurements", policy);
      expect(r.code).toBe(1);
      expect(r.err).toContain("tpm.pcrs.11: must be 64 hex characters");
    });

    it("a policy pinning PCR 11 or 12 is refused with the explanation that they are activation markers", async () => {
      const policy = join(dir, "marker-policy.json");
      await writeFile(policy, JSON.stringify({ tpm: { pcrs: { "0": "00".repeat(32), "11": "00".repeat(32) } } }));
      const r = await run("evidence", "verify", gce, "--measurements", policy);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/pins PCR 11: PCR 11 and 12 are the activation markers/);
    });

    it("a policy naming a platform without pinning anything is refused", async () => {
      const policy = join(dir, "empty-policy.json");
      await writeFile(policy, JSON.stringify({ tpm: {} }));
      const r = await run("evidence", "verify", gce, "--measurements", policy);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/the tpm section pins no PCR/);
    });

    it("an SNP-only policy refuses the TPM document", async () => {
      const r = await run("evidence", "verify", gce, "--measurements", milanPolicy);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/names no tpm section: refused/);
    });
  });
});
