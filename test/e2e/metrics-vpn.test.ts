/**
 * meshd --metrics-listen vpn:PORT across namespaces: every peer serves Prometheus metrics on its VPN
 * IP once it has one, reachable through WireGuard (the admin scrapes each peer from its own
 * namespace) and from nowhere else: a neighbour that routes the VPN IP via the peer's public
 * address is dropped by the peer's `meshd_metrics_<interface>` nftables table. Runs dist/: build first.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { LocalMesh } from "../../src/localmesh/local-mesh.js";
import { metricsPort, type LocalPeer } from "../../src/localmesh/local-peer.js";
import { localMeshTools } from "../../src/localmesh/requirements.js";
import { vpnapiFilterTable } from "../../src/wireguard/vpnapi-filter.js";
import { canRunE2E } from "../helpers/netns.js";

const reason = canRunE2E(localMeshTools);

describe.skipIf(reason !== undefined)(`metrics on the VPN IP${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let mesh: LocalMesh;
  let coordinator: LocalPeer;
  let node: LocalPeer;
  const progress: string[] = [];

  beforeAll(async () => {
    mesh = await LocalMesh.create({ updateIntervalSec: 1, metricsOnVPN: true, progress: (l) => progress.push(l), readyTimeoutMs: 20_000 });
    [coordinator, node] = (await mesh.startPeers(["coord", "node1"])) as [LocalPeer, LocalPeer];
    const r = await mesh.activate(coordinator, [node]);
    if (r.exitCode !== 0) throw new Error(`activate failed: ${r.stderr}`);
    await mesh.connectAdmin();
  }, 90_000);

  afterAll(async () => {
    await mesh?.close();
  });

  /** scrape fetches http://ip:port/metrics from inside namespace `ns`; undefined when nothing answers within 3 s. */
  const scrape = async (ns: string, ip: string): Promise<string | undefined> => {
    const script = `fetch("http://${ip}:${metricsPort}/metrics", { signal: AbortSignal.timeout(3000) }).then(async (r) => process.stdout.write(await r.text()))`;
    const r = await mesh.net.exec(ns, process.execPath, ["-e", script], { reject: false, timeoutMs: 10_000 });
    return r.exitCode === 0 ? r.stdout : undefined;
  };

  it("the admin scrapes every peer through WireGuard; a neighbour routing a VPN IP via the public address is dropped, and would not be without meshd's table", async () => {
    onTestFailed(() => {
      process.stderr.write(`\n--- localmesh progress\n${progress.join("\n")}\n${mesh?.diagnostics(20) ?? ""}\n`);
    });
    for (const p of [coordinator, node]) {
      const text = await scrape(mesh.admin.netns, p.vpnIP!);
      expect(text, `the admin scrapes ${p.label} at ${p.vpnIP}`).toContain("meshd_peer_state");
      const tables = (await mesh.net.exec(p.netns, "nft", ["list", "tables"])).stdout;
      expect(tables).toContain(vpnapiFilterTable(p.wgInterface, "metrics"));
    }
    // Nothing listens on the public address or loopback for metrics.
    expect(await scrape(node.netns, "127.0.0.1")).toBeUndefined();

    const host = mesh.net.addNode("host");
    await mesh.net.exec(host.name, "ip", ["route", "add", `${node.vpnIP!}/32`, "via", node.publicIP]);
    expect(await scrape(host.name, node.vpnIP!), "the public side is dropped").toBeUndefined();
    const table = vpnapiFilterTable(node.wgInterface, "metrics");
    const saved = (await mesh.net.exec(node.netns, "nft", ["list", "table", "inet", table])).stdout;
    await mesh.net.exec(node.netns, "nft", ["delete", "table", "inet", table]);
    try {
      expect(await scrape(host.name, node.vpnIP!), "without the table the neighbour reads the metrics").toContain("meshd_peer_state");
    } finally {
      await mesh.net.exec(node.netns, "nft", ["-f", "-"], { input: saved });
    }
    expect(await scrape(host.name, node.vpnIP!), "the restored table drops it again").toBeUndefined();
  }, 60_000);
});
