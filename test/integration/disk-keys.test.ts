import { afterEach, describe, expect, it } from "vitest";
import { stateDiskKey } from "../../src/core/keys.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { PubAPIClient } from "../../src/pubapi/client.js";
import { cryptsetupUUID, opensWithKeyFile } from "../helpers/luks.js";
import { until } from "../helpers/wait.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import nacl from "tweetnacl";

const secret = Buffer.from("disk test master secret, 32 byte");
const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");


describe("state-disk keys from the master secret (real LUKS2 files, real cryptsetup)", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  async function activated(): Promise<{ coord: TestPeer; nodes: TestPeer[]; clusterID: Buffer }> {
    mesh = new TestMesh({ withDisks: "luks", updateIntervalMs: 100 });
    const coord = await mesh.startPeer("coord");
    const nodes = await Promise.all([1, 2].map((i) => mesh.startPeer(`node${i}`)));
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: nodes.map((n) => n.endpoint), coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toEqual([]);
    return { coord, nodes, clusterID: cfg.clusterID };
  }

  it("after activation every peer's disk opens with its derived key and no longer with its initial key", async () => {
    const { coord, nodes, clusterID } = await activated();
    for (const p of [coord, ...nodes]) {
      const luks = p.hardware.luks!;
      const uuid = await cryptsetupUUID(luks.path);
      // Derived independently here from the master secret, the cluster ID and `cryptsetup luksUUID`.
      expect(await opensWithKeyFile(luks.path, stateDiskKey(secret, clusterID, uuid)), p.name).toBe(true);
      expect(await opensWithKeyFile(luks.path, luks.initialKey), p.name).toBe(false);
    }
  });

  it("after a Node reboots, RequestStateDiskKey delivers the same key again and the Node re-joins", async () => {
    const { nodes, clusterID } = await activated();
    const node = nodes[0]!;
    const vpnIP = node.vpn.vpnIP;
    const uuid = await cryptsetupUUID(node.hardware.luks!.path);
    const again = await mesh.restartPeer(node, { reboot: true });
    await until("the Node re-joins", () => again.peer.state === PeerState.IsNode, 20_000).catch((e) => { throw new Error(`${e.message}\n${again.logs.slice(-15).join("\n")}\n--- mesh\n${mesh.logs.filter((l) => /warn|error/i.test(l)).slice(-15).join("\n")}`); });
    expect(again.vpn.vpnIP).toBe(vpnIP);
    expect(again.vpn.peers.length).toBeGreaterThan(0);
    expect(again.logs.join("\n")).toContain("state disk unlocked with the key from the Coordinator");
    expect(again.marker.marks).toBe(1); // the rebooted TPM was marked again before anything else
    expect(await opensWithKeyFile(node.hardware.luks!.path, stateDiskKey(secret, clusterID, uuid))).toBe(true);
    const key = stateDiskKey(secret, clusterID, uuid).toString("hex");
    expect(mesh.logs.join("\n")).not.toContain(key);
  });

  it("a Coordinator refuses the key of a disk it never saw, saying why", async () => {
    const { coord } = await activated();
    const client = new PubAPIClient({ validators: mesh.validators(), issuer: coord.issuer });
    const err = await client.requestStateDiskKey(coord.endpoint, "00000000-0000-4000-8000-000000000000").catch((e: Error) => e);
    client.close();
    expect(String(err)).toMatch(/stateDiskUUID: 00000000-0000-4000-8000-000000000000 is not a disk of any activated peer/);
    expect((err as { code?: string }).code).toBe("permission-denied");
  });

  it("a failing rotation fails the Node's activation with the reason, and its initial key still opens the disk", async () => {
    mesh = new TestMesh({ withDisks: "luks" });
    const coord = await mesh.startPeer("coord");
    const node = await mesh.startPeer("node");
    const luks = node.hardware.luks!;
    // Break the Node's initial key file: cryptsetup cannot authorize the rotation.
    await (await import("node:fs/promises")).writeFile(luks.initialKeyFile, Buffer.alloc(32, 7));
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [node.endpoint], coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toHaveLength(1);
    expect(cfg.failed[0]!.error).toMatch(/initial key/);
    expect(node.peer.state).toBe(PeerState.Failed);
    expect(await opensWithKeyFile(luks.path, luks.initialKey)).toBe(true);
  });
});
