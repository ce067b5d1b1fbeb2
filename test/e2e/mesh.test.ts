/**
 * The whole mesh across network namespaces, through the real processes: every peer a meshd with its
 * own swtpm and wireguard-go in its own namespace, the admin running `meshctl` and wg-quick in
 * another (src/localmesh). Runs against dist/ (bin/meshd.js, bin/meshctl.js): build first.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import type { MeshStatus } from "../../src/cli/status.js";
import { LocalMesh } from "../../src/localmesh/local-mesh.js";
import type { LocalPeer } from "../../src/localmesh/local-peer.js";
import { localMeshTools } from "../../src/localmesh/requirements.js";
import { vpnapiFilterTable } from "../../src/wireguard/vpnapi-filter.js";
import { waitFor } from "../../src/shared/wait.js";
import { canRunE2E } from "../helpers/netns.js";

const reason = canRunE2E(localMeshTools);
const repo = join(import.meta.dirname, "..", "..");
const updateIntervalSec = 1;
/** convergeMs bounds "within one update interval": the interval, plus a poll in flight and process latency. */
const convergeMs = 3 * updateIntervalSec * 1000 + 2000;

/** checkBuilt fails when dist/ is older than src/: the peers run bin/meshd.js, which runs dist/. */
function checkBuilt(): void {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
  for (const ts of walk(join(repo, "src")).filter((f) => !f.endsWith(".d.ts"))) {
    const js = join(repo, "dist", relative(repo, ts)).replace(/\.ts$/, ".js");
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) throw new Error(`dist/ is stale (${relative(repo, ts)} is newer than its build): run npm run build`);
  }
}

interface Route {
  dst: string;
  dev: string;
}

async function routes(mesh: LocalMesh, ns: string): Promise<Route[]> {
  return JSON.parse((await mesh.net.exec(ns, "ip", ["-j", "-4", "route", "show"])).stdout) as Route[];
}

async function routeGet(mesh: LocalMesh, ns: string, ip: string): Promise<string> {
  return (JSON.parse((await mesh.net.exec(ns, "ip", ["-j", "route", "get", ip])).stdout) as Route[])[0].dev;
}

/** tunnelPeers lists a peer's WireGuard peers as "key allowed-ips" (endpoints of dial-in admins move, so they are left out). */
async function tunnelPeers(mesh: LocalMesh, p: LocalPeer): Promise<string[]> {
  const dump = (await mesh.net.exec(p.netns, "wg", ["show", p.wgInterface, "dump"])).stdout.trim().split("\n").slice(1);
  return dump.map((l) => l.split("\t")).map((f) => `${f[0]} ${f[3]}`).sort();
}

/** getState asks a peer for its state over aTLS that demands a fresh peer, from the admin's namespace. */
async function getState(mesh: LocalMesh, p: LocalPeer): Promise<{ exitCode: number | undefined; out: string }> {
  const dist = (f: string) => JSON.stringify(pathToFileURL(join(repo, "dist", "src", f)).href);
  const script = `
    import { getState } from ${dist("pubapi/admin.js")};
    import { createATLSChannelCredentials } from ${dist("atls/client.js")};
    import { loadValidators } from ${dist("attestation/validators.js")};
    const creds = createATLSChannelCredentials(await loadValidators(process.argv[1]), { requireFresh: true });
    process.stdout.write(await getState(process.argv[2], creds));`;
  const r = await mesh.net.exec(mesh.admin.netns, process.execPath, ["--input-type=module", "-e", script, mesh.measurementsFile, p.endpoint], { reject: false });
  return { exitCode: r.exitCode, out: `${r.stdout}${r.stderr}`.trim() };
}

describe.skipIf(reason !== undefined)(`mesh across namespaces (meshd, meshctl, swtpm, wireguard-go)${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let mesh: LocalMesh;
  let coordinator: LocalPeer;
  let nodes: LocalPeer[];
  const progress: string[] = [];

  const diagnoseOnFailure = (): void =>
    onTestFailed(() => {
      process.stderr.write(`\n--- localmesh progress\n${progress.join("\n")}\n${mesh?.diagnostics(20) ?? ""}\n`);
    });

  beforeAll(async () => {
    checkBuilt();
    mesh = await LocalMesh.create({ updateIntervalSec, progress: (l) => progress.push(l), readyTimeoutMs: 20_000 });
    [coordinator, ...nodes] = (await mesh.startPeers(["coord", "node1", "node2", "node3"])) as [LocalPeer, ...LocalPeer[]];
  }, 60_000);

  afterAll(async () => {
    await mesh?.close();
  });

  it("admin activates 1 Coordinator + 3 Nodes through meshctl with a measurement policy; packets cross the VPN and only the VPN", async () => {
    diagnoseOnFailure();
    const policy = JSON.parse(await readFile(mesh.measurementsFile, "utf8")) as { tpm: { pcrs: Record<string, string>; allowTestRoot: boolean } };
    expect(Object.keys(policy.tpm.pcrs).map(Number)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Anchored evidence: each swtpm's AK is certified by the project's test CA, which this policy allows.
    expect(policy.tpm.allowTestRoot).toBe(true);
    for (const v of Object.values(policy.tpm.pcrs)) expect(v).toMatch(/^[0-9a-f]{64}$/);

    const r = await mesh.activate(coordinator, nodes);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Coordinator ${coordinator.publicIP} is 10.118.0.1`);
    expect(r.stderr).toContain("[3/3] activated Node");

    // meshd serves the vpnapi only behind its nftables filter (src/wireguard/vpnapi-filter.ts).
    const filter = await mesh.net.exec(coordinator.netns, "nft", ["list", "table", "inet", vpnapiFilterTable(coordinator.wgInterface)]);
    expect(filter.stdout).toContain("ip daddr 10.118.0.1 tcp dport 9027 drop");

    const peers = await mesh.connectAdmin();
    expect(peers.map((p) => p.role).sort()).toEqual(["admin", "coordinator", "node", "node", "node"]);
    for (const n of nodes) expect(n.vpnIP).toMatch(/^10\.118\.0\.\d+$/);

    // The admin reaches every Node through its own tunnel.
    for (const n of nodes) expect(await mesh.ping(n.vpnIP!)).toBeGreaterThan(0);

    // Node 1 reaches Node 2 through the VPN.
    const [node1, node2] = nodes as [LocalPeer, LocalPeer];
    expect(await mesh.ping(node2.vpnIP!, node1.netns)).toBeGreaterThan(0);
    expect(await routeGet(mesh, node1.netns, node2.vpnIP!)).toBe(node1.wgInterface);
    // ... while its public address stays the only route outside the VPN: no default route, the
    // underlay /24 on eth0, and nothing of 10.118.0.0/16 except through the WireGuard device.
    const table = await routes(mesh, node1.netns);
    expect(table.find((x) => x.dst === "default")).toBeUndefined();
    expect(table.filter((x) => x.dev !== node1.wgInterface)).toEqual([expect.objectContaining({ dst: "198.18.0.0/24", dev: "eth0" })]);
    expect(table.filter((x) => x.dst.startsWith("10.118.")).every((x) => x.dev === node1.wgInterface)).toBe(true);
    expect(await routeGet(mesh, node1.netns, node2.publicIP)).toBe("eth0");
  }, 45_000);

  it("a neighbour on the public network that routes the VPN IP to the Coordinator cannot reach meshd's vpnapi; without meshd's filter it could", async () => {
    diagnoseOnFailure();
    // The host (or any neighbour) sends packets for 10.118.0.1 to the Coordinator's public address:
    // they arrive on eth0, not through WireGuard, so their source is not authenticated by it.
    const host = mesh.net.addNode("host");
    await mesh.net.exec(host.name, "ip", ["route", "add", "10.118.0.1/32", "via", coordinator.publicIP]);
    const connects = async (ns: string): Promise<boolean> =>
      (await mesh.net.exec(ns, "timeout", ["3", "bash", "--norc", "-c", "exec 3<>/dev/tcp/10.118.0.1/9027"], { reject: false })).exitCode === 0;
    expect(await connects(host.name), "the public side is dropped").toBe(false);
    expect(await connects(nodes[0].netns), "a Node through WireGuard still connects").toBe(true);
    // The control: with meshd's table taken away the same packets reach the vpnapi. Put back after.
    const table = vpnapiFilterTable(coordinator.wgInterface);
    const saved = (await mesh.net.exec(coordinator.netns, "nft", ["list", "table", "inet", table])).stdout;
    await mesh.net.exec(coordinator.netns, "nft", ["delete", "table", "inet", table]);
    try {
      expect(await connects(host.name), "without the filter the neighbour connects").toBe(true);
    } finally {
      await mesh.net.exec(coordinator.netns, "nft", ["-f", "-"], { input: saved });
    }
    expect(await connects(host.name), "the restored filter drops it again").toBe(false);
  }, 45_000);

  it("a ClientHello whose server name is not a nonce is refused, and the Coordinator's /metrics counts it under that check", async () => {
    diagnoseOnFailure();
    const refused = (t: string): number => metric(t, "meshd_atls_handshakes_total", { result: "refused", check: "sni nonce" }) ?? 0;
    const before = refused(await coordinator.metrics());
    const hello = `const s = require("node:tls").connect({ host: "${coordinator.publicIP}", port: 9000, servername: "not-a-nonce.example", rejectUnauthorized: false });
      s.on("secureConnect", () => process.exit(3)); s.on("error", () => process.exit(0));`;
    const r = await mesh.net.exec(mesh.admin.netns, process.execPath, ["-e", hello], { reject: false, timeoutMs: 10_000 });
    expect(r.exitCode, "the handshake must fail").toBe(0);
    await waitFor(async () => (refused(await coordinator.metrics()) === before + 1 ? true : undefined), { what: "the refused handshake in /metrics", timeoutMs: 5_000 });
  }, 30_000);

  it("meshctl add-nodes --out adds a fifth peer, also to the admin's wg0.conf; within one update interval every peer's wg show lists it, and the admin reaches it through the rewritten file", async () => {
    diagnoseOnFailure();
    // Metrics after the activation: what the Coordinator counted, and every Node at its version.
    const m0 = await coordinator.metrics();
    expect(metric(m0, "meshd_peers", { role: "node" })).toBe(3);
    expect(metric(m0, "meshd_peers", { role: "coordinator" })).toBe(1);
    expect(metric(m0, "meshd_activation_seconds_count", { role: "node", result: "ok" })).toBe(3);
    expect(metric(m0, "meshd_peer_state", { state: "ActivatingNodes" })).toBe(1);
    const v0 = metric(m0, "meshd_resource_version")!;
    await waitFor(async () => ((await Promise.all(nodes.map(async (n) => metric(await n.metrics(), "meshd_resource_version")))).every((v) => v === v0) ? true : undefined), {
      what: `every Node's meshd_resource_version to be ${v0}`,
      timeoutMs: convergeMs,
    });
    const p0 = metric(await coordinator.metrics(), "meshd_propagation_seconds_count")!;
    const [node4] = (await mesh.startPeers(["node4"])) as [LocalPeer];
    const key = (await mesh.net.exec(node4.netns, "wg", ["show", node4.wgInterface, "public-key"])).stdout.trim();
    const r = await mesh.addNodes([node4]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`activated ${node4.publicIP.replaceAll(".", "\\.")}:9000 as 10\\.118\\.0\\.\\d+`));
    // add-nodes --out added node4 to the admin's wg0.conf; the tunnel then follows that file
    // (LocalMesh.refresh: meshctl admin-config through the VPN, wg syncconf), and the admin reaches node4.
    expect(r.stdout).toMatch(/wrote \S+wg0\.conf: 5 peer\(s\), 1 added, 0 removed/);
    expect(progress.some((l) => /^wrote \S+wg0\.conf: 5 peer\(s\), 0 added, 0 removed/.test(l)), progress.join("\n")).toBe(true);
    const added = Date.now();
    const others = [coordinator, ...nodes];
    await waitFor(async () => ((await Promise.all(others.map((p) => mesh.wgPeers(p)))).every((keys) => keys.includes(key)) ? true : undefined), {
      what: `every peer to list ${node4.label}'s key`,
      timeoutMs: convergeMs,
    });
    progress.push(`every peer listed node4 ${Date.now() - added} ms after add-nodes returned`);
    expect(node4.vpnPubKey).toBe(key);
    // The change as metrics: one new version; each of the 3 earlier Nodes acknowledged it once (the
    // new Node's first acknowledgement is only its baseline), and the activation was counted.
    await waitFor(async () => (metric(await coordinator.metrics(), "meshd_propagation_seconds_count") === p0 + 3 ? true : undefined), {
      what: "3 propagation observations (one per earlier Node) on the Coordinator",
      timeoutMs: convergeMs,
    });
    const m1 = await coordinator.metrics();
    expect(metric(m1, "meshd_resource_version")).toBe(v0 + 1);
    expect(metric(m1, "meshd_peers", { role: "node" })).toBe(4);
    expect(metric(m1, "meshd_activation_seconds_count", { role: "node", result: "ok" })).toBe(4);
    expect(metric(m1, "meshd_atls_handshakes_total", { result: "served", check: "" })).toBeGreaterThan(0);
    expect(metric(await node4.metrics(), "meshd_peer_state", { state: "IsNode" })).toBe(1);
    expect(await mesh.ping(node4.vpnIP!)).toBeGreaterThan(0);
    expect(await mesh.ping(node4.vpnIP!, nodes[0].netns)).toBeGreaterThan(0);
    nodes.push(node4);
  }, 30_000);

  it("meshctl status --json through the VPN: the admin verifies every Coordinator and Node itself (tpm, the swtpm test CA) and every Node applied the current version", async () => {
    diagnoseOnFailure();
    const vpnIP = mesh.coordinatorVPNIP!;
    let last = "";
    const status = await waitFor(
      async () => {
        const r = await mesh.admin.meshctl(["status", "--json", "--vpn-endpoint", vpnIP, "--measurements", mesh.measurementsFile], 60_000);
        last = `${r.exitCode}: ${r.stderr}${r.stdout.slice(0, 2000)}`;
        return r.exitCode === 0 ? (JSON.parse(r.stdout) as MeshStatus) : undefined;
      },
      { what: "meshctl status to exit 0 (every Node current, every peer verified)", timeoutMs: convergeMs },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last meshctl status: ${last}`);
    });
    const meshPeers = status.peers.filter((p) => p.role !== "admin");
    expect(meshPeers.map((p) => p.vpnIP).sort()).toEqual([coordinator, ...nodes].map((p) => p.vpnIP!).sort());
    for (const p of meshPeers) {
      expect(p.attestation, p.vpnIP).toMatchObject({ checked: true, ok: true, platform: "tpm" });
      expect(p.attestation.root).toContain("simulated TPM test CA");
    }
    for (const p of meshPeers.filter((x) => x.role === "node")) expect([p.appliedVersion, p.lag]).toEqual([status.resourceVersion, 0]);
  }, 90_000);

  it("a Node whose WireGuard peers were all removed converges back on the next poll", async () => {
    diagnoseOnFailure();
    const node2 = nodes[1];
    const before = await tunnelPeers(mesh, node2);
    expect(before).toHaveLength(nodes.length + 1); // the Coordinator, the other Nodes and the admin
    const keys = await mesh.wgPeers(node2);
    await mesh.net.exec(node2.netns, "wg", ["set", node2.wgInterface, ...keys.flatMap((k) => ["peer", k, "remove"])]);
    expect(await mesh.wgPeers(node2)).toEqual([]);
    const reset = Date.now();
    await waitFor(async () => ((await tunnelPeers(mesh, node2)).join() === before.join() ? true : undefined), {
      what: `${node2.label}'s WireGuard peers to be restored`,
      timeoutMs: convergeMs,
    });
    progress.push(`node2 restored its ${before.length} peers ${Date.now() - reset} ms after the reset`);
    // Packets flow again once node2 handshakes afresh (it knows the other peers' endpoints); node1's
    // stale session is replaced by that handshake, so node1 reaches node2 again right away. (The admin,
    // which node2 cannot dial, gets through after WireGuard's own re-handshake, ~15 s of silence.)
    expect(await mesh.ping(nodes[0].vpnIP!, node2.netns)).toBeGreaterThan(0);
    expect(await mesh.ping(node2.vpnIP!, nodes[0].netns, 3000)).toBeGreaterThan(0);
  }, 30_000);

  it("meshd SIGKILLed alone (its wireguard-go and device left running) and started again: the Coordinator serves the vpnapi again within 5 s, a Node re-joins, both converge on the next change", async () => {
    diagnoseOnFailure();
    const vpnapiUp = async (from: LocalPeer): Promise<boolean> =>
      (await mesh.net.exec(from.netns, "timeout", ["1", "bash", "--norc", "-c", "exec 3<>/dev/tcp/10.118.0.1/9027"], { reject: false })).exitCode === 0;
    const node1 = nodes[0];
    const change = async (label: string): Promise<void> => {
      const [n] = (await mesh.startPeers([label])) as [LocalPeer];
      const r = await mesh.addNodes([n]);
      expect(r.exitCode, r.stderr).toBe(0);
      const key = (await mesh.net.exec(n.netns, "wg", ["show", n.wgInterface, "public-key"])).stdout.trim();
      await waitFor(async () => ((await Promise.all([coordinator, ...nodes].map((p) => mesh.wgPeers(p)))).every((keys) => keys.includes(key)) ? true : undefined), {
        what: `every peer to list ${label}`,
        timeoutMs: convergeMs,
      });
      nodes.push(n);
    };

    await coordinator.crash({ meshdOnly: true });
    expect((await mesh.net.exec(coordinator.netns, "wg", ["show", coordinator.wgInterface, "public-key"])).exitCode).toBe(0); // the orphan serves on
    await coordinator.restartMeshd();
    const restarted = Date.now();
    await waitFor(async () => ((await vpnapiUp(node1)) ? true : undefined), { what: "the restarted Coordinator's vpnapi through the VPN", timeoutMs: 5_000 });
    progress.push(`the Coordinator served the vpnapi ${Date.now() - restarted} ms after its restart listened`);
    expect(coordinator.processes.at(-1)!.logTail(80)).toMatch(/stopped the wireguard-go an earlier process left running/);
    await change("node5");

    await node1.crash({ meshdOnly: true });
    await node1.restartMeshd();
    await change("node6");
  }, 90_000);

  it("a Node that roams (its address as its peers see it changes) stays reachable through the endpoint its peers learned, across changes and repairs", async () => {
    diagnoseOnFailure();
    const [roamer, observer] = [nodes[1], nodes[2]];
    const key = (await mesh.net.exec(roamer.netns, "wg", ["show", roamer.wgInterface, "public-key"])).stdout.trim();
    const endpointAt = async (p: LocalPeer): Promise<string | undefined> =>
      (await mesh.net.exec(p.netns, "wg", ["show", p.wgInterface, "endpoints"])).stdout.split("\n").map((l) => l.split("\t")).find((f) => f[0] === key)?.[1];
    // A NAT rebinding: the roamer's WireGuard now sends from (and answers only at) another port; the
    // Coordinator's record still names the old one. (An address change is the same to WireGuard.)
    const roamed = `${roamer.publicIP}:51999`;
    await mesh.net.exec(roamer.netns, "wg", ["set", roamer.wgInterface, "listen-port", "51999"]);
    // The roamer speaks first (from its new port): its peers learn the new endpoint.
    expect(await mesh.ping(observer.vpnIP!, roamer.netns, 10_000)).toBeGreaterThan(0);
    await waitFor(async () => ((await endpointAt(observer)) === roamed ? true : undefined), { what: "the observer to learn the roamed endpoint", timeoutMs: 5_000 });

    // Changes (a new Node: a delta to every peer) and the periodic repairs (every 3 intervals) must
    // not push the stale endpoint back.
    const [n] = (await mesh.startPeers(["roamnew"])) as [LocalPeer];
    const newKey = (await mesh.net.exec(n.netns, "wg", ["show", n.wgInterface, "public-key"])).stdout.trim();
    const r = await mesh.addNodes([n]);
    expect(r.exitCode, r.stderr).toBe(0);
    await waitFor(async () => ((await mesh.wgPeers(observer)).includes(newKey) ? true : undefined), { what: "the observer to list the new Node", timeoutMs: convergeMs });
    nodes.push(n);
    await new Promise((res) => setTimeout(res, 2 * 3 * updateIntervalSec * 1000 + 1000)); // two repair periods pass
    expect(await endpointAt(observer)).toBe(roamed);
    expect(await mesh.ping(roamer.vpnIP!, observer.netns, 3_000)).toBeGreaterThan(0);
  }, 60_000);

  it("a wrong measurement policy (one PCR changed) makes meshctl activate fail with one line naming 'policy pcrs'; nothing is activated", async () => {
    diagnoseOnFailure();
    const [fresh] = (await mesh.startPeers(["fresh"])) as [LocalPeer];
    const policy = JSON.parse(await readFile(mesh.measurementsFile, "utf8")) as { tpm: { pcrs: Record<string, string> } };
    const pcr0 = policy.tpm.pcrs["0"];
    policy.tpm.pcrs["0"] = `${pcr0.slice(0, -1)}${pcr0.endsWith("0") ? "1" : "0"}`;
    const wrong = join(mesh.workDir, "wrong-measurements.json");
    await writeFile(wrong, JSON.stringify(policy));

    const r = await mesh.activate(fresh, [], { measurements: wrong });
    expect(r.exitCode).toBe(1);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("meshctl activate:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/policy pcrs: PCR 0 is [0-9a-f]{64}, policy wants [0-9a-f]{64}/);
    expect(r.stderr.trim().split("\n").at(-1)).toBe(errors[0].trim());
    expect(r.stdout).toBe("");

    // Nothing happened: the peer is still fresh (PCR 11/12 zero: aTLS with requireFresh passes) and AcceptingInit.
    expect(await getState(mesh, fresh)).toEqual({ exitCode: 0, out: "AcceptingInit" });
    expect(existsSync(join(mesh.admin.dir, fresh.label, "wg0.conf"))).toBe(false);
  }, 30_000);

  it("the audit logs of this run: refused attacks are named with their check and caller, calls carry who made them, and no meshd log holds a secret", async () => {
    diagnoseOnFailure();
    const node = nodes[0];
    // Two attacks from the admin's namespace: an unsigned admin request, and a trigger without a caller proof.
    const dist = (f: string) => JSON.stringify(pathToFileURL(join(repo, "dist", "src", f)).href);
    const script = `
      import { sendActivateAdditionalNodes } from ${dist("pubapi/admin.js")};
      import { createATLSChannelCredentials } from ${dist("atls/client.js")};
      import { loadValidators } from ${dist("attestation/validators.js")};
      import { channelOptions, pubapiService } from ${dist("rpc/proto.js")};
      const creds = createATLSChannelCredentials(await loadValidators(process.argv[1]), {});
      const unsigned = await sendActivateAdditionalNodes(process.argv[2], creds, { request: Buffer.alloc(0), challenge: Buffer.alloc(0), signature: Buffer.alloc(0) }, () => {}).then(() => "accepted", (e) => e.code);
      const Client = pubapiService();
      const c = new Client(process.argv[3], creds, channelOptions);
      const trigger = await new Promise((r) => c.TriggerNodeUpdate({ callerProof: null }, { deadline: Date.now() + 20000 }, (e) => r(e ? e.code : "accepted")));
      c.close();
      process.stdout.write(JSON.stringify([unsigned, trigger]));`;
    const r = await mesh.net.exec(mesh.admin.netns, process.execPath, ["--input-type=module", "-e", script, mesh.measurementsFile, coordinator.endpoint, node.endpoint], { reject: false, timeoutMs: 60_000 });
    expect(r.stdout, r.stderr).toBe(JSON.stringify(["permission-denied", 7]));
    const audit = async (p: LocalPeer): Promise<Array<Record<string, unknown>>> =>
      (await readFile(join(p.dir, "meshd.log"), "utf8"))
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.audit === true);
    let coordAudit: Array<Record<string, unknown>> = [];
    await waitFor(async () => ((coordAudit = await audit(coordinator)).some((l) => l.method === "ActivateAdditionalNodes" && l.code === "PERMISSION_DENIED") ? true : undefined), { what: "the refusal in the Coordinator's audit log", timeoutMs: 5_000 });
    const refusedAdmin = coordAudit.find((l) => l.method === "ActivateAdditionalNodes" && l.code === "PERMISSION_DENIED")!;
    expect(refusedAdmin.caller).toBe(`unauthenticated ${mesh.admin.publicIP}`);
    expect(refusedAdmin.refusal).toMatch(/admin signature: missing/);
    const nodeAudit = await audit(node);
    const refusedTrigger = nodeAudit.find((l) => l.method === "TriggerNodeUpdate" && l.code === "PERMISSION_DENIED");
    expect(refusedTrigger?.refusal).toMatch(/TriggerNodeUpdate: caller proof: missing/);
    // Calls that succeeded name who proved what: the admin's signed add-nodes, the Coordinator on the Node.
    expect(coordAudit.find((l) => l.method === "ActivateAdditionalNodes" && l.code === "OK")?.caller).toBe(`admin (signed request) at ${mesh.admin.publicIP}`);
    expect(nodeAudit.find((l) => l.method === "JoinCluster" && l.code === "OK")?.caller).toBe(`Coordinator of this cluster (attested, cluster credential) at ${coordinator.publicIP}`);
    expect(coordAudit.some((l) => l.method === "GetPeers" && l.code === "OK" && String(l.caller).startsWith("VPN peer 10.118."))).toBe(true);
    // No secret in any meshd log: the master secret, and every peer's WireGuard private key (raw, hex, base64).
    const secrets: string[] = [];
    const master = await readFile(mesh.masterSecretFile);
    secrets.push(master.toString("hex"), master.toString("base64"), master.toString("latin1"));
    for (const p of [coordinator, ...nodes]) {
      const wgKey = (await readFile(join(p.dir, "state", "wg.key"), "utf8")).trim();
      secrets.push(wgKey, Buffer.from(wgKey, "base64").toString("hex"));
    }
    for (const p of [coordinator, ...nodes]) {
      const log = await readFile(join(p.dir, "meshd.log"), "utf8");
      for (const secret of secrets) expect(log.includes(secret), `${p.label}'s meshd.log holds a secret`).toBe(false);
    }
  }, 90_000);

  it("close() removes every process, namespace, WireGuard socket and the temp dir", async () => {
    const namespaces = [mesh.net.bridgeNs, mesh.admin.netns, ...mesh.peers.map((p) => p.netns)];
    const sockets = [mesh.admin.wgInterface, ...mesh.peers.map((p) => p.wgInterface)].map((i) => `/var/run/wireguard/${i}.sock`);
    expect(sockets.filter((s) => existsSync(s))).toHaveLength(sockets.length);
    await mesh.close();
    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    expect(namespaces.filter((n) => left.includes(n))).toEqual([]);
    expect(sockets.filter((s) => existsSync(s))).toEqual([]);
    expect(existsSync(mesh.workDir)).toBe(false);
    expect(mesh.peers.flatMap((p) => p.processes).map((p) => p.exitStatus)).not.toContain(undefined);
  });
});

describe.skipIf(reason !== undefined)(`localmesh command${reason ? ` — skipped: ${reason}` : ""}`, () => {
  it("localmesh --nodes 1 --keep prints every peer with its RTT through the VPN, and SIGTERM tears everything down", async () => {
    checkBuilt();
    const child = execa(process.execPath, [join(repo, "bin", "localmesh.js"), "--nodes", "1", "--keep"], { reject: false, all: false, buffer: true });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      await waitFor(async () => (stderr.includes("press Ctrl-C") ? true : undefined), { what: "localmesh to be up", timeoutMs: 30_000 }, () => {
        if (child.exitCode !== null) throw new Error(`localmesh exited early (${child.exitCode}): ${stderr}`);
      });
      const id = /bridge namespace am-([0-9a-f]{6})-br/.exec(stderr)?.[1];
      const workDir = /files in (\/\S+)/.exec(stderr)?.[1];
      expect(id).toBeDefined();
      expect(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout).toContain(`am-${id}-coordinator`);
      child.kill("SIGTERM");
      const r = await child;
      expect(r.exitCode, stderr).toBe(0);
      const rows = r.stdout.trim().split("\n");
      expect(rows[0]).toMatch(/^ROLE\s+PUBLIC IP\s+VPN IP\s+PING \(VPN\)\s+NAMESPACE$/);
      expect(rows.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(["coordinator", "node", "admin"]);
      for (const l of rows.slice(1, 3)) expect(l).toMatch(/^\w+\s+198\.18\.0\.\d+\s+10\.118\.0\.\d+\s+[\d.]+ ms\s+am-/);
      expect(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout).not.toContain(`am-${id}-`);
      expect(readdirSync("/var/run/wireguard").filter((f) => stderr.includes(f.replace(/\.sock$/, "")))).toEqual([]);
      expect(existsSync(workDir!)).toBe(false);
    } finally {
      child.kill("SIGKILL");
    }
  }, 45_000);
});

/**
 * metric reads one sample from Prometheus text: `name` with exactly `labels` (all of them; none when
 * omitted). Undefined when absent.
 */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[k] = v!;
    const keys = Object.keys(labels);
    if (Object.keys(got).length === keys.length && keys.every((k) => got[k] === labels[k])) return Number(m[3]);
  }
  return undefined;
}
