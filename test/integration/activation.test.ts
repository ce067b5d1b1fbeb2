import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { activateAdditionalNodes, activateAsCoordinator } from "../../src/pubapi/admin.js";
import { PeerState } from "../../src/core/state.js";
import { TestMesh } from "../helpers/mesh.js";

const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const masterSecret = Buffer.from("0123456789abcdef0123456789abcdef");

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("activation chain in one process", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("activates 1 Coordinator + 3 Nodes, routes node1→node2 only, adds a 4th node and converges", async () => {
    mesh = new TestMesh({ withDisks: true });
    const coord = await mesh.startPeer("coord");
    const nodes = await Promise.all([1, 2, 3].map((i) => mesh.startPeer(`node${i}`)));
    const lines: string[] = [];
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), masterSecret, nodeEndpoints: nodes.map((n) => n.endpoint), coordinatorEndpoints: [] },
      (l) => lines.push(l),
    );
    expect(cfg.failed).toEqual([]);
    expect(cfg.coordinator.vpnIP).toBe("10.118.0.1");
    expect(cfg.adminVPNIP).toBe("10.118.0.11");
    expect(lines.some((l) => l.includes("activated Node"))).toBe(true);
    expect(coord.peer.state).toBe(PeerState.ActivatingNodes);
    for (const n of nodes) expect(n.peer.state).toBe(PeerState.IsNode);
    const ips = nodes.map((n) => n.vpn.vpnIP);
    expect(new Set(ips).size).toBe(3);

    await until("nodes see each other", () => nodes.every((n) => n.vpn.peers.length === 4));
    expect(mesh.net.send(nodes[0]!.vpn, nodes[1]!.vpn.vpnIP!, "hello")).toBe(true);
    expect(nodes[1]!.vpn.inbox).toEqual([{ fromVPNIP: nodes[0]!.vpn.vpnIP, payload: "hello" }]);
    expect(nodes[2]!.vpn.inbox).toEqual([]);

    const node4 = await mesh.startPeer("node4");
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), [node4.endpoint], () => {});
    expect(res.failed).toEqual([]);
    expect(res.activated).toHaveLength(1);
    const version = (await coord.peer.getUpdate(-1)).resourceVersion;
    await until("all peers converge", async () => {
      for (const n of [...nodes, node4]) {
        const v = await n.peer.triggerNodeUpdate();
        if (v !== version) return false;
      }
      return true;
    });
    for (const n of [...nodes, node4]) expect(n.vpn.peers).toHaveLength(5);
    expect(mesh.logs.join("\n")).not.toContain(masterSecret.toString());
    expect(mesh.logs.join("\n")).not.toContain(masterSecret.toString("base64"));
  });
});
