// MeshPeer and Coordinator driven through activation, failure, re-join and disk-key delivery with
// in-process clients (test/helpers/in-process.ts): the core's protocol logic without gRPC, TLS or
// sockets, in milliseconds. The wire itself is covered by test/integration.
import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { stateDiskKey } from "../../src/core/keys.js";
import { PeerState } from "../../src/core/state.js";
import { InProcessMesh, type InProcessPeer } from "../helpers/in-process.js";
import { until } from "../helpers/wait.js";

const secret = Buffer.from("in-process master secret, 32 B!!");
const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");

describe("core without gRPC (in-process clients)", () => {
  let mesh: InProcessMesh;
  afterEach(() => mesh.close());

  async function activated(nodes: number): Promise<{ coord: InProcessPeer; nodes: InProcessPeer[]; clusterID: Buffer; failed: string[] }> {
    mesh = new InProcessMesh();
    const coord = await mesh.start(await mesh.hardware("coord"));
    const ns = await Promise.all(Array.from({ length: nodes }, async (_, i) => mesh.start(await mesh.hardware(`n${i}`))));
    const cfg = await coord.peer.activateAsCoordinator(
      { adminVPNPubKey: adminKey(), adminPubKey: nacl.sign.keyPair().publicKey, masterSecret: secret, nodeEndpoints: ns.map((n) => n.hw.endpoint), coordinatorEndpoints: [] },
      () => {},
    );
    return { coord, nodes: ns, clusterID: cfg.clusterID, failed: cfg.failed.map((f) => f.error) };
  }

  it("activation: the Coordinator activates two Nodes; each disk holds its derived key; every device lists every peer", async () => {
    const { coord, nodes, clusterID, failed } = await activated(2);
    expect(failed).toEqual([]);
    expect(coord.peer.state).toBe(PeerState.ActivatingNodes); // a Coordinator's serving state
    for (const n of nodes) {
      expect(n.peer.state).toBe(PeerState.IsNode);
      expect(n.hw.disk.passphrase.equals(stateDiskKey(secret, clusterID, n.hw.disk.diskUUID))).toBe(true);
      expect(n.hw.marker.marks).toBe(1);
    }
    expect(coord.hw.disk.passphrase.equals(stateDiskKey(secret, clusterID, coord.hw.disk.diskUUID))).toBe(true);
    const ips = (await coord.peer.getUpdate(-1)).peers!.map((p) => p.vpnIP);
    await until("every device lists every other peer", () => [coord, ...nodes].every((p) => ips.filter((ip) => ip !== p.hw.vpn.vpnIP).every((ip) => p.hw.vpn.peers.some((x) => x.vpnIP === ip))));
  });

  it("failure: a Node that cannot be reached is reported with its reason; the other is activated; the unreachable one stays fresh", async () => {
    mesh = new InProcessMesh();
    const coord = await mesh.start(await mesh.hardware("coord"));
    const ok = await mesh.start(await mesh.hardware("ok"));
    const gone = await mesh.start(await mesh.hardware("gone"));
    mesh.down.add(gone.hw.endpoint);
    const cfg = await coord.peer.activateAsCoordinator(
      { adminVPNPubKey: adminKey(), adminPubKey: nacl.sign.keyPair().publicKey, masterSecret: secret, nodeEndpoints: [ok.hw.endpoint, gone.hw.endpoint], coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toEqual([{ endpoint: gone.hw.endpoint, error: expect.stringMatching(/nothing serves/) as string, marked: false }]);
    expect(ok.peer.state).toBe(PeerState.IsNode);
    expect(gone.peer.state).toBe(PeerState.AcceptingInit);
    expect(gone.hw.marker.marks).toBe(0);
    // Its VPN IP was released: the peer set holds the Coordinator, the admin and one Node.
    expect((await coord.peer.getUpdate(-1)).peers!.map((p) => p.role).sort()).toEqual(["admin", "coordinator", "node"]);
  });

  it("re-join with disk-key delivery: a rebooted Node asks the Coordinator, gets its disk key pushed with a proof, unlocks and is IsNode again", async () => {
    const { nodes } = await activated(1);
    const node = nodes[0];
    mesh.stop(node);
    node.hw.marker.owner = undefined; // a reboot resets the PCRs: the marker reads fresh
    node.hw.marker.cluster = undefined;
    const unlocked: string[] = [];
    const unlock = node.hw.disk.unlock.bind(node.hw.disk);
    node.hw.disk.unlock = async (key) => {
      await unlock(key);
      unlocked.push("ok");
    };
    const again = await mesh.start(node.hw);
    await until("the rebooted Node to be IsNode", () => again.peer.state === PeerState.IsNode, 5_000);
    expect(unlocked).toEqual(["ok"]);
    expect(node.hw.marker.marks).toBe(2); // marked again before anything else
  });

  it("re-join while the Coordinator is unreachable: the rebooted Node waits without a key, retrying; once the Coordinator answers, it re-joins", async () => {
    const { coord, nodes } = await activated(1);
    const node = nodes[0];
    mesh.stop(node);
    mesh.down.add(coord.hw.endpoint);
    const again = await mesh.start(node.hw);
    await until("the Node to have asked for its key and failed at least twice", () => mesh.logs.filter((l) => l.includes("n0") && /nothing serves/.test(l)).length >= 2, 10_000);
    expect(again.peer.state).toBe(PeerState.NodeWaitingForClusterJoin);
    mesh.down.delete(coord.hw.endpoint);
    await until("the Node to re-join", () => again.peer.state === PeerState.IsNode, 10_000);
  });

  describe("the first Coordinator's activation interrupted (a crash between two steps), then restarted and re-run by the admin", () => {
    const request = (admin: { vpn: string; sign: Uint8Array }, nodes: InProcessPeer[], masterSecret = secret) => ({
      adminVPNPubKey: admin.vpn,
      adminPubKey: admin.sign,
      masterSecret,
      nodeEndpoints: nodes.map((n) => n.hw.endpoint),
      coordinatorEndpoints: [],
    });

    /** interrupted runs ActivateAsCoordinator with `step` of the Coordinator's hardware throwing (the crash), then restarts the Coordinator. */
    async function interrupted(step: "nodeState" | "marker"): Promise<{ coord: InProcessPeer; node: InProcessPeer; admin: { vpn: string; sign: Uint8Array } }> {
      mesh = new InProcessMesh();
      const hw = await mesh.hardware("coord");
      const node = await mesh.start(await mesh.hardware("n0"));
      const first = await mesh.start(hw);
      const crash = (): Promise<never> => Promise.reject(new Error("crash"));
      const original = { save: hw.records.save.bind(hw.records), mark: hw.marker.mark.bind(hw.marker) };
      if (step === "nodeState") hw.records.save = crash;
      else hw.marker.mark = crash;
      const admin = { vpn: adminKey(), sign: nacl.sign.keyPair().publicKey };
      await expect(first.peer.activateAsCoordinator(request(admin, [node]), () => {})).rejects.toThrow(/crash/);
      mesh.stop(first);
      hw.records.save = original.save;
      hw.marker.mark = original.mark;
      return { coord: await mesh.start(hw), node, admin };
    }

    it("before the commit point (node state): the restarted peer is fresh, its store emptied, and the admin's re-run activates it from the start", async () => {
      const { coord, node, admin } = await interrupted("nodeState");
      expect(coord.peer.state).toBe(PeerState.AcceptingInit);
      expect(coord.hw.marker.marks).toBe(0);
      expect(await coord.hw.store.list("")).toEqual([]);
      const cfg = await coord.peer.activateAsCoordinator(request(admin, [node]), () => {});
      expect(cfg.failed).toEqual([]);
      expect(node.peer.state).toBe(PeerState.IsNode);
      expect(coord.hw.disk.passphrase.equals(stateDiskKey(secret, cfg.clusterID, coord.hw.disk.diskUUID))).toBe(true);
    });

    it("after the commit point: the restarted peer restores itself as the Coordinator (marker set, disk rotated); the re-run returns the admin's config and activates nobody (that takes the admin's signature)", async () => {
      const { coord, node, admin } = await interrupted("marker");
      expect(coord.peer.state).toBe(PeerState.ActivatingNodes);
      expect(coord.hw.marker.marks).toBe(1); // marked at restart, before anything else
      const logs: string[] = [];
      const cfg = await coord.peer.activateAsCoordinator(request(admin, [node]), (l) => logs.push(l));
      expect(logs.join("\n")).toMatch(/resuming the activation this Coordinator committed before .*not in the mesh yet: 198\.51\.100\.\d+:9000/);
      expect(cfg.failed).toEqual([]);
      expect(cfg.peers.map((p) => p.role).sort()).toEqual(["admin", "coordinator"]);
      expect(cfg.peers.find((p) => p.role === "admin")!.vpnPubKey).toBe(admin.vpn);
      expect(node.peer.state).toBe(PeerState.AcceptingInit);
      expect(coord.hw.disk.passphrase.equals(stateDiskKey(secret, cfg.clusterID, coord.hw.disk.diskUUID))).toBe(true);
    });

    it("after the commit point, a request with another master secret or other admin keys is refused (PERMISSION_DENIED), nothing changed", async () => {
      const { coord, node, admin } = await interrupted("marker");
      const other = Buffer.from("another master secret, 32 bytes!");
      for (const req of [request(admin, [node], other), request({ ...admin, sign: nacl.sign.keyPair().publicKey }, [node]), request({ ...admin, vpn: adminKey() }, [node])]) {
        await expect(coord.peer.activateAsCoordinator(req, () => {})).rejects.toMatchObject({ code: "permission-denied", message: expect.stringMatching(/not the activation it committed/) as string });
      }
      expect(node.peer.state).toBe(PeerState.AcceptingInit);
      expect((await coord.peer.getUpdate(-1)).peers!.map((p) => p.role).sort()).toEqual(["admin", "coordinator"]);
    });
  });
});
