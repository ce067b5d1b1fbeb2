import { afterEach, describe, expect, it } from "vitest";
import { stateDiskKey } from "../../src/core/keys.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { PubAPIClient } from "../../src/pubapi/client.js";
import { copyFile, rename } from "node:fs/promises";
import { execa } from "execa";
import { createLUKSFile, cryptsetupUUID, opensWithKeyFile } from "../helpers/luks.js";
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
    const node = nodes[0];
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

  it("a host that swaps a rebooted Node's disk for one it made with the same UUID gets nothing: the derived key does not open it, the Node fails naming it, the host's disk is untouched; with its own disk back the Node re-joins", async () => {
    const { nodes, clusterID } = await activated();
    const node = nodes[0];
    const real = node.hardware.luks!;
    const uuid = await cryptsetupUUID(real.path);
    const derived = stateDiskKey(secret, clusterID, uuid);
    // The host powers the Node off, keeps its disk aside and puts in one it formatted itself with
    // the same UUID (the UUID is public in the LUKS header), hoping the Node will use it.
    await node.stopSoftware();
    const hostMade = await createLUKSFile({ sizeMiB: 20, uuid });
    try {
      expect(await cryptsetupUUID(hostMade.path)).toBe(uuid);
      await rename(real.path, `${real.path}.real`);
      await copyFile(hostMade.path, real.path);
      const again = await mesh.restartPeer(node, { reboot: true });
      await until("the rebooted Node gives up on the swapped disk", () => again.peer.state === PeerState.Failed, 20_000);
      const log = again.logs.join("\n");
      expect(log).toMatch(/refused the key of disk/);
      expect(log).toMatch(new RegExp(`the key for disk ${uuid} does not open this peer's state disk: it is not the disk activated with that UUID`));
      expect(again.vpn.vpnIP).toBeUndefined(); // it never came back into the VPN
      // The host's disk still has its single keyslot: the Node wrote nothing to it.
      expect(await opensWithKeyFile(real.path, hostMade.initialKey)).toBe(true);
      expect(await opensWithKeyFile(real.path, derived)).toBe(false);
      const dump = (await execa("cryptsetup", ["luksDump", real.path], { stdin: "ignore" })).stdout;
      expect(dump.match(/^\s+\d+: luks2$/gm)?.length).toBe(1);
      expect(mesh.logs.join("\n")).not.toContain(derived.toString("hex"));
      // The host gives the real disk back: the Node's next start unlocks it and re-joins.
      await rename(`${real.path}.real`, real.path);
      const back = await mesh.restartPeer(again, { reboot: true });
      await until("the Node re-joins with its own disk", () => back.peer.state === PeerState.IsNode, 20_000);
      expect(await opensWithKeyFile(real.path, derived)).toBe(true);
    } finally {
      await hostMade.cleanup();
    }
  });

  it("a peer that is no Coordinator (yet) answers RequestStateDiskKey with FAILED_PRECONDITION saying so, never UNKNOWN", async () => {
    const { nodes } = await activated();
    const fresh = await mesh.startPeer("fresh");
    for (const p of [nodes[0], fresh]) {
      const client = new PubAPIClient({ validators: mesh.validators(), issuer: p.issuer });
      const err = await client.requestStateDiskKey(p.endpoint, "00000000-0000-4000-8000-000000000000").catch((e: Error) => e);
      client.close();
      expect((err as { code?: string }).code, p.name).toBe("failed-precondition");
      expect(String(err), p.name).toMatch(/not an activated Coordinator/);
    }
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
    expect(cfg.failed[0].error).toMatch(/initial key/);
    expect(node.peer.state).toBe(PeerState.Failed);
    expect(await opensWithKeyFile(luks.path, luks.initialKey)).toBe(true);
  });
});
