import { access, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import type { Issuer } from "../../src/attestation/attestation.js";
import { openTPM, type TPMIssuer } from "../../src/attestation/tpm-issuer.js";
import { TPM_TEST_CA_NAME } from "../../src/attestation/tpm-test-ca.js";
import { createATLSServerCredentials } from "../../src/atls/server.js";
import { main } from "../../src/cli/meshctl.js";
import { forgedTPMIssuer, pcrValues } from "../helpers/tpm-builder.js";
import { SIMULATED_SNP_MEASUREMENT, SimulatedSNPIssuer } from "../../src/attestation/snp-simulated.js";
import { sharedSimulatedSNPChain } from "../../src/attestation/snp-test-chain.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { freePort } from "../helpers/ports.js";

/**
 * Finding 1 of issue 10 at the CLI: a host that answers with a software-forged TPM document (a P-256
 * key claiming the restricted-signing bits, any PCRs) is refused by `meshctl verify` and by
 * `meshctl activate` at "ak anchoring", before the master secret leaves; `meshctl measurements
 * --from` captures a policy only from anchored evidence, warns loudly about a test root, and never
 * pins PCR 11/12.
 */

process.env.TSS2_LOG ??= "all+none";

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

const stops: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** serve runs an aTLS gRPC server (no services: the handshake is what is tested) for `issuer`. */
async function serve(issuer: Issuer): Promise<number> {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", createATLSServerCredentials(issuer), (err, p) => (err ? reject(err) : resolve(p))),
  );
  stops.push(() => server.forceShutdown());
  return port;
}

describe("meshctl refuses the software forgery at ak anchoring", () => {
  let dir: string;
  let policy: string;
  let secret: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-cli-anchor-"));
    policy = join(dir, "measurements.json");
    // The policy the forger satisfies exactly (PCRs 0-10 as it lists them), test root even allowed.
    const pcrs = pcrValues([...Array(11).keys()]);
    await writeFile(policy, JSON.stringify({ tpm: { pcrs: Object.fromEntries([...pcrs].map(([i, v]) => [String(i), Buffer.from(v).toString("hex")])), allowTestRoot: true } }));
    secret = join(dir, "secret");
    await writeFile(secret, "0123456789abcdef0123456789abcdef", { mode: 0o600 });
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  for (const chain of ["none", "self-made"] as const) {
    it(`meshctl verify: forged quote with ${chain === "none" ? "no" : "a self-made"} AK certificate → exit 1 naming ak anchoring`, async () => {
      const port = await serve(forgedTPMIssuer(chain));
      const r = await run("verify", "--endpoint", `127.0.0.1:${port}`, "--measurements", policy);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/aTLS: tpm ak anchoring: /);
      expect(r.out).toMatch(/ak anchoring\s+failed/);
      expect(r.out).toMatch(/policy pcrs\s+passed/); // everything else the forger controls looks fine
    });

    it(`meshctl activate: forged Coordinator with ${chain === "none" ? "no" : "a self-made"} AK certificate → refused naming ak anchoring, nothing written`, async () => {
      const port = await serve(forgedTPMIssuer(chain));
      const out = join(dir, `out-${chain}`);
      const r = await run("activate", "--coordinator", `127.0.0.1:${port}`, "--master-secret", secret, "--measurements", policy, "--out", out);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/ak anchoring/);
      await expect(access(join(out, "admin.json"))).rejects.toThrow();
      await expect(access(join(out, "wg0.conf"))).rejects.toThrow();
      // Nothing went out, so nothing can have been activated: no keys are kept for a re-run either.
      await expect(access(join(out, "activate.pending.json"))).rejects.toThrow();
      expect(r.err).not.toMatch(/re-run this same command/);
    });
  }

  it("meshctl activate keeps the admin's keys (0600) once a verified peer may have got the request, says to re-run, and the re-run uses them", async () => {
    // A verified peer (simulated SNP, test root allowed) that then fails the call: no pubapi service here.
    const port = await serve(new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() }));
    const snpPolicy = join(dir, "snp-sim.json");
    await writeFile(snpPolicy, JSON.stringify({ snp: { measurement: SIMULATED_SNP_MEASUREMENT, allowTestRoot: true } }));
    const out = join(dir, "out-kept");
    const file = join(out, "activate.pending.json");
    const first = await run("activate", "--coordinator", `127.0.0.1:${port}`, "--master-secret", secret, "--measurements", snpPolicy, "--out", out);
    expect(first.code).toBe(1);
    expect(first.err).toMatch(/re-run this same command then: it uses the keys kept in .*activate\.pending\.json/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const kept = await readFile(file, "utf8");
    expect(kept).not.toContain(await readFile(secret, "utf8")); // the keys only, never the master secret
    const again = await run("activate", "--coordinator", `127.0.0.1:${port}`, "--master-secret", secret, "--measurements", snpPolicy, "--out", out);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/resuming an interrupted activation with the admin keys kept in/);
    expect(await readFile(file, "utf8")).toBe(kept);
    // A re-run that reaches nobody (the Coordinator's meshd still down) keeps them too: a Coordinator may hold them.
    const down = await run("activate", "--coordinator", `127.0.0.1:${await freePort()}`, "--master-secret", secret, "--measurements", snpPolicy, "--out", out);
    expect(down.code).toBe(1);
    expect(await readFile(file, "utf8")).toBe(kept);
  });

  it("meshctl activate refuses a damaged activate.pending.json, naming it, before it contacts anyone", async () => {
    const port = await serve(forgedTPMIssuer("none"));
    const out = join(dir, "out-pending");
    await mkdir(out, { recursive: true });
    const file = join(out, "activate.pending.json");
    await writeFile(file, "{not json", { mode: 0o600 });
    const r = await run("activate", "--coordinator", `127.0.0.1:${port}`, "--master-secret", secret, "--measurements", policy, "--out", out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/activate\.pending\.json: not what an interrupted meshctl activate kept .*move it away to start over/);
    expect(await readFile(file, "utf8")).toBe("{not json"); // left as it was
  });

  it("an SNP-only policy refuses a TPM peer: no TPM validator is built, the handshake fails naming the platform", async () => {
    const port = await serve(forgedTPMIssuer("none"));
    const snpOnly = join(dir, "snp-only.json");
    await writeFile(snpOnly, JSON.stringify({ snp: { measurement: "00".repeat(48) } }));
    const r = await run("verify", "--endpoint", `127.0.0.1:${port}`, "--measurements", snpOnly);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/aTLS: unknown platform OID 2\.25\.253605056268324015777377207452082665588 .*this client validates: snp/);
  });

  it("meshctl measurements --from a forger captures nothing: exit 1 naming ak anchoring", async () => {
    const port = await serve(forgedTPMIssuer("none"));
    const r = await run("measurements", "--from", `127.0.0.1:${port}`);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ak anchoring/);
    expect(r.out).not.toMatch(/"pcrs"/);
  });
});

describe("meshctl measurements --from a simulated TPM (trust on first use)", () => {
  let swtpm: Swtpm;
  let issuer: TPMIssuer;
  let dir: string;
  beforeAll(async () => {
    swtpm = await startSwtpm();
    issuer = await openTPM(swtpm.tcti);
    dir = await mkdtemp(join(tmpdir(), "am-cli-tofu-"));
  });
  afterAll(async () => {
    await issuer?.close();
    await swtpm?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("prints and writes the policy its anchored evidence shows (PCRs 0-9, never 11/12), warns about the test root, and verify then passes naming the root", async () => {
    await issuer.tpm.pcrEvent(11, Buffer.from("activated")); // even an activated peer: 11/12 are never pinned
    const port = await serve(issuer);
    const file = join(dir, "measurements.json");
    const r = await run("measurements", "--from", `127.0.0.1:${port}`, "--out", file);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/vouched for by attested-mesh simulated TPM test CA/);
    expect(r.err).toMatch(/WARNING: THE ROOT THAT VOUCHED IS A TEST ROOT/);
    const policy = JSON.parse(await readFile(file, "utf8")) as { tpm: { pcrs: Record<string, string>; allowTestRoot: boolean } };
    expect(JSON.parse(r.out)).toEqual(policy);
    expect(Object.keys(policy.tpm.pcrs).map(Number)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(policy.tpm.allowTestRoot).toBe(true);
    const v = await run("verify", "--endpoint", `127.0.0.1:${port}`, "--measurements", file);
    expect(v.code, v.err).toBe(0);
    expect(v.out).toContain(`root:     ${TPM_TEST_CA_NAME} — A TEST ROOT`);
    const again = await run("measurements", "--from", `127.0.0.1:${port}`, "--out", file);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already exists/);
  });
});
