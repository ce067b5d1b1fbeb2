/**
 * Three Coordinators on a real etcd cluster that meshd manages (--store managed), across network
 * namespaces, through the real processes (meshd, meshctl, etcd, swtpm, wireguard-go). Runs against
 * dist/: build first.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { LocalMesh } from "../../src/localmesh/local-mesh.js";
import type { LocalPeer } from "../../src/localmesh/local-peer.js";
import { localMeshTools } from "../../src/localmesh/requirements.js";
import { waitFor } from "../../src/shared/wait.js";
import { canRunE2E } from "../helpers/netns.js";

const reason = canRunE2E(localMeshTools) ?? (existsSync("/usr/bin/etcd") ? undefined : "no /usr/bin/etcd (Debian etcd-server)");
const updateIntervalSec = 1;
/** twoIntervalsMs bounds "within two update intervals", plus a poll in flight and process latency. */
const twoIntervalsMs = 4 * updateIntervalSec * 1000 + 3000;

describe.skipIf(reason !== undefined)(`3 Coordinators on managed etcd${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let mesh: LocalMesh;
  let c1: LocalPeer, c2: LocalPeer, c3: LocalPeer, n1: LocalPeer, n2: LocalPeer, n3: LocalPeer;
  const progress: string[] = [];
  const diagnose = (): void =>
    onTestFailed(() => {
      process.stderr.write(`\n--- localmesh progress\n${progress.join("\n")}\n${mesh?.diagnostics(25) ?? ""}\n`);
    });
  const key = async (p: LocalPeer): Promise<string> => (await mesh.net.exec(p.netns, "wg", ["show", p.wgInterface, "public-key"])).stdout.trim();
  /** allList waits until every peer's device lists key k; a timeout names the peers still without it. */
  const allList = (peers: LocalPeer[], k: string, what: string) =>
    waitFor(
      async () => {
        const lists = await Promise.all(peers.map((p) => mesh.wgPeers(p)));
        const missing = peers.filter((_, i) => !lists[i].includes(k)).map((p) => p.label);
        if (missing.length > 0) throw new Error(`still without it: ${missing.join(", ")}`);
        return true;
      },
      { what, timeoutMs: twoIntervalsMs },
    );

  beforeAll(async () => {
    mesh = await LocalMesh.create({ updateIntervalSec, progress: (l) => progress.push(l), readyTimeoutMs: 20_000, managedStore: true });
    [c1, c2, c3, n1, n2] = (await mesh.startPeers(["c1", "c2", "c3", "n1", "n2"])) as [LocalPeer, LocalPeer, LocalPeer, LocalPeer, LocalPeer];
  }, 60_000);

  afterAll(async () => {
    await mesh?.close();
  });

  it("meshctl activate --coordinators makes 3 Coordinators, each with an etcd member, and 2 Nodes", async () => {
    diagnose();
    const r = await mesh.activate(c1, [n1, n2], { coordinators: [c2, c3] });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain("[2/2] activated Coordinator");
    for (const c of [c2, c3]) await allList([c1, n1, n2], await key(c), `every peer to list ${c.label}`);
    for (const c of [c1, c2, c3]) expect(existsSync(`${mesh.workDir}/${c.label}/state/etcd/data/member`)).toBe(true);
  }, 90_000);

  it("one Coordinator killed (meshd and etcd, SIGKILL): add-nodes goes through another; every live peer lists the new Node", async () => {
    diagnose();
    await c1.crash();
    [n3] = (await mesh.startPeers(["n3"])) as [LocalPeer];
    const r = await mesh.addNodes([n3]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/did not answer.*trying the next one/);
    const k = await key(n3);
    await allList([c2, c3, n1, n2], k, "every live peer to list n3");
    // Restarted, the killed Coordinator rejoins etcd and catches up with what changed while it was down.
    await c1.restartMeshd();
    await allList([c1], k, "the restarted c1 to list n3");
  }, 120_000);

  it("two of three Coordinators killed: Nodes still ping each other, add-nodes is refused at once naming the quorum and writes nothing; one back: it works", async () => {
    diagnose();
    const [n4] = (await mesh.startPeers(["n4"])) as [LocalPeer];
    await Promise.all([c2.crash(), c3.crash()]);
    // The data plane runs on the last applied configuration.
    const n2IP = await vpnIP(n2);
    expect(await mesh.ping(n2IP, n1.netns, 10_000)).toBeGreaterThan(0);
    // c1's member loses its leader within an election timeout; until then a change could still be tried.
    const t0 = Date.now();
    const r = await waitFor(async () => {
      const x = await mesh.addNodes([n4]);
      progress.push(`  add-nodes exit ${x.exitCode}: ${x.stderr.trim().split("\n").join(" | ").slice(0, 1500)}`);
      return x.exitCode !== 0 && /quorum/.test(x.stderr) ? x : undefined;
    }, { what: "add-nodes to be refused for the lost quorum", timeoutMs: 30_000 });
    const refused = `add-nodes refused ${Date.now() - t0} ms after the kills: ${r.stderr.trim().split("\n").pop()}`;
    progress.push(refused);
    console.info(refused);
    expect(r.stderr).toMatch(/UNAVAILABLE|unavailable/);
    expect(r.stderr).toMatch(/etcd quorum/);
    // Nothing half-written: the Node stays fresh (no node state, no peers on its device).
    expect(existsSync(`${mesh.workDir}/${n4.label}/state/node-state.json`)).toBe(false);
    expect(await mesh.wgPeers(n4)).toEqual([]);
    expect(await mesh.ping(n2IP, n1.netns, 10_000)).toBeGreaterThan(0);

    // One Coordinator back: a majority again, the change goes through and every live peer converges.
    await c2.restartMeshd();
    const ok = await waitFor(async () => {
      const x = await mesh.addNodes([n4]);
      return x.exitCode === 0 ? x : undefined;
    }, { what: "add-nodes to succeed once the quorum is back", timeoutMs: 60_000 });
    expect(ok.stderr).toContain("activated Node");
    await allList([c1, c2, n1, n2, n3], await key(n4), "every live peer to list n4");
  }, 180_000);

  it("a Node partitioned (link down) for three intervals misses a change; healed, it converges", async () => {
    diagnose();
    const [n5] = (await mesh.startPeers(["n5"])) as [LocalPeer];
    await mesh.net.exec(n1.netns, "ip", ["link", "set", "eth0", "down"]);
    await new Promise((r) => setTimeout(r, 3 * updateIntervalSec * 1000));
    const r = await mesh.addNodes([n5]);
    expect(r.exitCode, r.stderr).toBe(0);
    const k = await key(n5);
    await allList([c1, c2, n2], k, "the reachable peers to list n5");
    expect(await mesh.wgPeers(n1)).not.toContain(k);
    const healed = Date.now();
    await mesh.net.exec(n1.netns, "ip", ["link", "set", "eth0", "up"]);
    await allList([n1], k, "the healed n1 to list n5");
    console.info(`partitioned n1 listed n5 ${Date.now() - healed} ms after the link came back`);
  }, 120_000);

  /** vpnIP reads a peer's VPN address from its WireGuard interface. */
  async function vpnIP(p: LocalPeer): Promise<string> {
    const out = (await mesh.net.exec(p.netns, "ip", ["-4", "-o", "addr", "show", "dev", p.wgInterface])).stdout;
    const m = /inet (\d+\.\d+\.\d+\.\d+)/.exec(out);
    if (!m) throw new Error(`${p.label} has no VPN address on ${p.wgInterface}: ${out}`);
    return m[1];
  }
});
