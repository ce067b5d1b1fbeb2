// meshctl status (issue 13): one table of the mesh from inside the VPN, --json, --watch. The
// vpnapi here is the real server on loopback over a fixed peer set; attestation is checked by the
// admin's own aTLS handshake, so a software-forged peer shows the failed check, never "fine".
import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createATLSServerCredentials } from "../../src/atls/server.js";
import { main } from "../../src/cli/meshctl.js";
import type { MeshStatus } from "../../src/cli/status.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { generateKeyPair } from "../../src/wireguard/keys.js";
import { startFakeVPNAPI } from "../helpers/fake-vpnapi.js";
import { forgedTPMIssuer, pcrValues } from "../helpers/tpm-builder.js";

const key = (): string => generateKeyPair().pubKey;
const coordinator: PeerRecord = { role: "coordinator", publicIP: "127.0.0.1", vpnIP: "10.118.0.1", vpnPubKey: key(), wgPort: 51820, pubapiPort: 9000 };
const node = (i: number, port = 9000): PeerRecord => ({ role: "node", publicIP: "127.0.0.1", vpnIP: `10.118.1.${i}`, vpnPubKey: key(), wgPort: 51820, pubapiPort: port });
const admin: PeerRecord = { role: "admin", publicIP: "", vpnIP: "10.118.1.100", vpnPubKey: key(), wgPort: 0, pubapiPort: 0 };

const stops: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

async function vpnapi(peers: PeerRecord[], acks: Array<[string, number]>): Promise<string> {
  const f = await startFakeVPNAPI(peers, 7);
  for (const [ip, v] of acks) f.ack(ip, v);
  stops.push(() => f.close());
  return f.endpoint;
}

describe("meshctl status", () => {
  it("prints one line per peer with applied version, lag and last seen; attestation 'not checked' without a policy; exit 0 when every Node is current", async () => {
    const [n1, n2] = [node(1), node(2)];
    const ep = await vpnapi([coordinator, admin, n1, n2], [[n1.vpnIP, 7], [n2.vpnIP, 7]]);
    const r = await run("status", "--vpn-endpoint", ep);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toBe(`mesh at ${ep}: resource version 7, 4 peer(s), 0 lagging, 0 failing attestation`);
    expect(lines[1]).toMatch(/^ROLE\s+VPN IP\s+PUBLIC\s+APPLIED\s+LAG\s+LAST SEEN\s+ATTESTATION$/);
    expect(lines.find((l) => l.includes("10.118.1.1 "))).toMatch(/^node\s+10\.118\.1\.1\s+127\.0\.0\.1:9000\s+7\s+0\s+\d+s ago\s+not checked \(no --measurements\)$/);
  });

  it("--json gives every field; a lagging Node makes the exit status 1", async () => {
    const [n1, n2] = [node(1), node(2)];
    const ep = await vpnapi([coordinator, n1, n2], [[n1.vpnIP, 7], [n2.vpnIP, 5]]);
    const r = await run("status", "--vpn-endpoint", ep, "--json");
    expect(r.code).toBe(1);
    const s = JSON.parse(r.out) as MeshStatus;
    expect(s.resourceVersion).toBe(7);
    expect(s.peers.map((p) => [p.role, p.vpnIP, p.appliedVersion, p.lag])).toEqual([
      ["coordinator", "10.118.0.1", 0, null],
      ["node", "10.118.1.1", 7, 0],
      ["node", "10.118.1.2", 5, 2],
    ]);
    expect(s.peers[1].attestation).toEqual({ checked: false, ok: false });
    expect(s.peers[1].lastSeenMs).toBeGreaterThan(0);
  });

  it("with --measurements a software-forged peer shows the failed check (ak anchoring) and the exit status is 1", async () => {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", createATLSServerCredentials(forgedTPMIssuer("self-made")), (e, p) => (e ? reject(e) : resolve(p))));
    stops.push(() => server.forceShutdown());
    const dir = await mkdtemp(join(tmpdir(), "am-status-"));
    stops.push(() => rm(dir, { recursive: true, force: true }));
    const policy = join(dir, "measurements.json");
    const pcrs = pcrValues([...Array(11).keys()]);
    await writeFile(policy, JSON.stringify({ tpm: { pcrs: Object.fromEntries([...pcrs].map(([i, v]) => [String(i), Buffer.from(v).toString("hex")])), allowTestRoot: true } }));
    const forged = node(1, port);
    const ep = await vpnapi([forged], [[forged.vpnIP, 7]]);
    const r = await run("status", "--vpn-endpoint", ep, "--measurements", policy, "--json");
    expect(r.code).toBe(1);
    const a = (JSON.parse(r.out) as MeshStatus).peers[0].attestation;
    expect(a).toMatchObject({ checked: true, ok: false, platform: "tpm" });
    expect(a.failed).toMatch(/^ak anchoring: /);
    const t = await run("status", "--vpn-endpoint", ep, "--measurements", policy);
    expect(t.out).toContain("1 failing attestation");
    expect(t.out).toMatch(/FAILED ak anchoring: /);
  });

  it("--watch prints again every --interval until interrupted; JSON one document per line", async () => {
    const n1 = node(1);
    const ep = await vpnapi([coordinator, n1], [[n1.vpnIP, 7]]);
    const out: string[] = [];
    const done = main(["status", "--vpn-endpoint", ep, "--json", "--watch", "--interval", "0.2"], { out: (l) => out.push(l), err: () => {} });
    while (out.length < 3) await new Promise((r) => setTimeout(r, 50));
    process.emit("SIGINT");
    expect(await done).toBe(0);
    for (const l of out) expect((JSON.parse(l) as MeshStatus).peers).toHaveLength(2);
  });

  const bad: Array<[string, string[], RegExp]> = [
    ["--interval without --watch", ["--interval", "5"], /--interval needs --watch/],
    ["a too short --interval", ["--watch", "--interval", "0.01"], /--interval: must be 0.2 to 3600 seconds/],
    ["a bad endpoint", ["--vpn-endpoint", "10.118.0.1:99999"], /--vpn-endpoint: port must be 1-65535/],
  ];
  for (const [name, argv, want] of bad) {
    it(`refuses ${name}`, async () => {
      const r = await run("status", ...argv);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(want);
    });
  }

  it("an unreachable vpnapi is one clear line", async () => {
    const r = await run("status", "--vpn-endpoint", "127.0.0.1:1");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^meshctl status: .*127\.0\.0\.1:1/);
  }, 30_000);
});
