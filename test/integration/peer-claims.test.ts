import nacl from "tweetnacl";
import { afterEach, describe, expect, it } from "vitest";
import { stateDiskKey } from "../../src/core/keys.js";
import { checkPeerSet } from "../../src/core/peer.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import type { AdminConfig } from "../../src/core/mesh-peer.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import type { FakeDisk } from "../helpers/fakes.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { until } from "../helpers/wait.js";

const secret = Buffer.from("claims test master secret 32 by!");
const wgKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");

describe("what a Node reports cannot take another peer's disk key or WireGuard identity (real gRPC, aTLS)", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  async function activate(coord: TestPeer, nodes: TestPeer[], adminVPNPubKey = wgKey()): Promise<AdminConfig> {
    return activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey, adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: nodes.map((n) => n.endpoint), coordinatorEndpoints: [] }, () => {});
  }

  it("a Node claiming the Coordinator's disk UUID is refused and gets no key (the Coordinator registers its disk)", async () => {
    mesh = new TestMesh({ attestation: "test", withDisks: true });
    const coord = await mesh.startPeer("coord");
    const [thief, honest] = [await mesh.startPeer("thief"), await mesh.startPeer("honest")];
    const coordDisk = coord.disk as FakeDisk;
    (thief.disk as FakeDisk).diskUUID = coordDisk.diskUUID;
    const cfg = await activate(coord, [thief, honest]);
    expect(cfg.failed.map((f) => f.endpoint)).toEqual([thief.endpoint]);
    expect(cfg.failed[0].error).toMatch(/stateDiskUUID: .* already belongs to another peer/);
    const coordKey = stateDiskKey(secret, cfg.clusterID, coordDisk.diskUUID);
    expect(coordDisk.passphrase.equals(coordKey)).toBe(true);
    expect((thief.disk as FakeDisk).passphrase.equals(coordKey)).toBe(false);
    await until("the honest Node joins", () => honest.peer.state === PeerState.IsNode, 10_000);
  });

  it("of two Nodes naming one disk UUID, exactly one gets its key", async () => {
    mesh = new TestMesh({ attestation: "test", withDisks: true });
    const coord = await mesh.startPeer("coord");
    const nodes = [await mesh.startPeer("a"), await mesh.startPeer("b")];
    (nodes[1].disk as FakeDisk).diskUUID = (nodes[0].disk as FakeDisk).diskUUID;
    const cfg = await activate(coord, nodes);
    expect(cfg.failed).toHaveLength(1);
    expect(cfg.failed[0].error).toMatch(/already belongs to another peer/);
  });

  const twins = [
    { name: "the admin's", key: (_c: TestPeer, admin: string) => admin },
    { name: "the Coordinator's", key: (c: TestPeer) => c.vpn.pubKey },
  ];
  for (const tc of twins) {
    it(`a Node returning ${tc.name} WireGuard key fails alone; the peer set stays valid for everyone`, async () => {
      mesh = new TestMesh({ attestation: "test", updateIntervalMs: 100 });
      const coord = await mesh.startPeer("coord");
      const [evil, good] = [await mesh.startPeer("evil"), await mesh.startPeer("good")];
      const admin = wgKey();
      evil.vpn.pubKey = tc.key(coord, admin);
      const cfg = await activate(coord, [evil, good], admin);
      expect(cfg.failed.map((f) => f.endpoint)).toEqual([evil.endpoint]);
      expect(cfg.failed[0].error).toMatch(/vpnPubKey: WireGuard public key already used by peer 10\.118\.0\./);
      expect(() => checkPeerSet(cfg.peers, "peers")).not.toThrow();
      expect(cfg.peers.map((p) => p.role).sort()).toEqual(["admin", "coordinator", "node"]);
      const client = new VPNAPIClient(mesh.vpnapi.get("10.118.0.1")!);
      try {
        // The client validates the served set (checkPeerSet): it would refuse a set with the twin.
        const update = await client.getUpdate(0, "10.118.0.11");
        expect(update.peers).toHaveLength(3);
      } finally {
        client.close();
      }
      await until("the good Node joins", () => good.peer.state === PeerState.IsNode, 10_000);
    });
  }
});
