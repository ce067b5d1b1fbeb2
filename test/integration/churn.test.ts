/**
 * Churn: while Nodes are added and removed and a random Coordinator is killed and restarted, the
 * invariants hold at every moment, not only at the end: every Node's applied resource version only
 * grows, no VPN IP or disk UUID is ever held by two peers, no activated peer is lost, and at the end
 * every device lists the same peers as the store. Three Coordinators share one store (in process).
 */
import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import type { PeerRecord } from "../../src/core/peer.js";
import { activateAdditionalNodes, activateAsCoordinator, removePeer } from "../../src/pubapi/admin.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { until } from "../helpers/wait.js";

const secret = Buffer.from("churn test master secret, 32 by.");

describe("churn", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("Nodes added and removed while Coordinators are killed and restarted: the invariants hold throughout", async () => {
    mesh = new TestMesh({ attestation: "test", withDisks: true, sharedStore: true, updateIntervalMs: 100 });
    let coords = await Promise.all(["c1", "c2", "c3"].map((n) => mesh.startPeer(n)));
    const first = await Promise.all(["n1", "n2", "n3"].map((n) => mesh.startPeer(n)));
    const cfg = await activateAsCoordinator(
      coords[0].endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: first.map((n) => n.endpoint), coordinatorEndpoints: coords.slice(1).map((c) => c.endpoint) },
      () => {},
    );
    expect(cfg.failed).toEqual([]);

    /** nodes are the activated Nodes, by name; removed Nodes leave it. */
    const nodes = new Map<string, TestPeer>(first.map((n) => [n.name, n]));
    const down = new Set<string>(); // Coordinators killed right now
    const live = () => coords.find((c) => !down.has(c.name))!;
    const violations: string[] = [];
    const lastVersion = new Map<TestPeer, number>();
    let checks = 0;
    const snapshot = async (): Promise<PeerRecord[]> => (await live().peer.getUpdate(-1)).peers!;

    // The sampler checks the invariants every 20 ms for the whole run.
    const check = async (): Promise<void> => {
      checks++;
      for (const n of nodes.values()) {
        const v = n.peer.nodeResourceVersion;
        if (v === undefined) continue;
        const before = lastVersion.get(n) ?? 0;
        if (v < before) violations.push(`${n.name}'s applied version went back from ${before} to ${v}`);
        lastVersion.set(n, Math.max(before, v));
      }
      const ips = [...nodes.values(), ...coords].map((p) => p.vpn.vpnIP).filter((ip): ip is string => ip !== undefined);
      const dupIP = ips.find((ip, i) => ips.indexOf(ip) !== i);
      if (dupIP) violations.push(`two devices hold ${dupIP}`);
      const peers = await snapshot().catch(() => undefined);
      if (!peers) return;
      const seen = new Set<string>();
      for (const p of peers) {
        if (seen.has(p.vpnIP)) violations.push(`the store lists ${p.vpnIP} twice`);
        seen.add(p.vpnIP);
      }
      const disks = await Promise.all(peers.filter((p) => p.role !== "admin").map(async (p) => {
        const owner = [...nodes.values(), ...coords].find((x) => x.vpn.vpnIP === p.vpnIP);
        return owner?.disk ? owner.disk.uuid() : undefined;
      }));
      const known = disks.filter((d): d is string => d !== undefined);
      if (new Set(known).size !== known.length) violations.push("two peers of the store hold one disk UUID");
      for (const n of nodes.values()) {
        if (n.vpn.vpnIP && n.peer.nodeResourceVersion !== undefined && !seen.has(n.vpn.vpnIP)) violations.push(`activated ${n.name} (${n.vpn.vpnIP}) is missing from the store`);
      }
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await check();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    let adds = 0;
    let removes = 0;
    let kills = 0;
    let next = 4;
    const ops = 30;
    for (let i = 0; i < ops; i++) {
      const coordinator = live();
      if (i % 3 === 0) {
        const n = await mesh.startPeer(`n${next++}`);
        const res = await activateAdditionalNodes(coordinator.endpoint, mesh.credentials(false), mesh.admin, [n.endpoint], () => {});
        expect(res.failed, `add ${n.name} through ${coordinator.name}`).toEqual([]);
        nodes.set(n.name, n);
        adds++;
      } else if (i % 3 === 1 && nodes.size > 2) {
        const victim = [...nodes.values()][i % nodes.size];
        nodes.delete(victim.name); // from now on it may be gone from the store
        lastVersion.delete(victim);
        await removePeer("RemoveNode", coordinator.endpoint, mesh.credentials(false), mesh.admin, victim.vpn.vpnIP!);
        await victim.stop();
        removes++;
      } else {
        // Kill a random Coordinator (never the last live one), bring back any that is down.
        for (const name of [...down]) {
          const old = coords.find((c) => c.name === name)!;
          const again = await mesh.restartPeer(old);
          coords = coords.map((c) => (c === old ? again : c));
          down.delete(name);
        }
        const victim = coords[(i * 7) % coords.length];
        await victim.stopSoftware();
        down.add(victim.name);
        kills++;
      }
    }
    for (const name of [...down]) {
      const old = coords.find((c) => c.name === name)!;
      coords = coords.map((c) => (c === old ? undefined : c)).filter((c): c is TestPeer => c !== undefined);
      coords.push(await mesh.restartPeer(old));
      down.delete(name);
    }

    // The end: every device lists exactly the store's peers (itself aside).
    const final = await snapshot();
    for (const p of [...nodes.values(), ...coords]) {
      const want = final.filter((x) => x.vpnIP !== p.vpn.vpnIP).map((x) => x.vpnIP).sort();
      await until(`${p.name} lists the store's peers`, () => JSON.stringify(p.vpn.peers.map((x) => x.vpnIP).sort()) === JSON.stringify(want), 20_000);
    }
    sampling = false;
    await sampler;
    for (const n of nodes.values()) expect(final.some((p) => p.vpnIP === n.vpn.vpnIP), `${n.name} kept`).toBe(true);
    console.info(`churn: ${adds + removes + kills} operations (${adds} Nodes added, ${removes} removed, ${kills} Coordinator kills and restarts), ${checks} invariant checks, ${violations.length} violations`);
    expect(violations.join("\n")).toBe("");
  }, 180_000);
});
