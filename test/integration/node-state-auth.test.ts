/**
 * A rebooted peer trusts nothing the host can rewrite: its node state (a file, or the LUKS2 token)
 * is authenticated with a MAC key sealed to its TPM's boot PCRs (swtpm here) before it is used.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nacl from "tweetnacl";
import { afterEach, describe, expect, it } from "vitest";

import { Tpm } from "../../src/attestation/native.js";
import { TPMKeySealer } from "../../src/attestation/tpm-seal.js";
import { PermissionDeniedError } from "../../src/core/errors.js";
import { AuthenticatedNodeState } from "../../src/core/node-state-auth.js";
import { NodeStateFile, type NodeState } from "../../src/core/node-state.js";
import { PeerState } from "../../src/core/state.js";
import { LUKSTokenNodeState, readBootstrapToken, updateBootstrapToken, writeBootstrapToken } from "../../src/diskencryption/bootstrap-token.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { createLUKSFile, haveCryptsetup, makeTempDir, trackTempDirs } from "../helpers/luks.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { caught, until } from "../helpers/wait.js";

process.env.TSS2_LOG ??= "all+none";

const track = trackTempDirs();

const state: NodeState = {
  role: "node",
  vpnIP: "10.118.0.11",
  ownerID: "ab".repeat(32),
  clusterID: "cd".repeat(32),
  coordinatorVPNIPs: ["10.118.0.1"],
  coordinatorEndpoints: ["192.0.2.1:9000"],
  coordinatorPeers: [{ role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: `${"A".repeat(43)}=`, wgPort: 51820, pubapiPort: 9000 }],
};

describe("node state sealed to the TPM (swtpm)", () => {
  const open: { swtpm: Swtpm; tpm: Tpm }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      await o.tpm.close();
      await o.swtpm.stop();
    }
  });
  async function machine(): Promise<Tpm> {
    const swtpm = await startSwtpm();
    const tpm = await Tpm.open(swtpm.tcti);
    open.push({ swtpm, tpm });
    return tpm;
  }

  it("a file: intact state loads; rewritten, another TPM's record, or a changed boot PCR is refused", async () => {
    const dir = await track(makeTempDir("am-ns-auth-"));
    const [tpm, otherTpm] = await Promise.all([machine(), machine()]);
    const path = join(dir.dir, "node-state.json");
    const store = () => new AuthenticatedNodeState(new NodeStateFile(path), new TPMKeySealer(tpm));
    await store().save(state);
    expect(await store().load()).toEqual(state);
    const intact = await readFile(path, "utf8");

    const record = JSON.parse(intact);
    await writeFile(path, JSON.stringify({ ...record, nodeState: { ...state, coordinatorEndpoints: ["203.0.113.66:9000"] } }));
    expect((await caught(store().load())).message).toMatch(/HMAC tag .* does not match/);

    const otherPath = join(dir.dir, "other.json");
    await new AuthenticatedNodeState(new NodeStateFile(otherPath), new TPMKeySealer(otherTpm)).save({ ...state, clusterID: "ef".repeat(32) });
    await writeFile(path, await readFile(otherPath));
    const swapped = await caught(store().load());
    expect(swapped).toBeInstanceOf(PermissionDeniedError);
    expect(swapped.message).toMatch(/check "sealed by this TPM" failed/);

    await writeFile(path, intact);
    expect(await store().load()).toEqual(state);
    await tpm.pcrExtend(0, Buffer.alloc(32, 1)); // the firmware measured something else this boot
    expect((await caught(store().load())).message).toMatch(/check "boot PCRs unchanged" failed/);
  });

  describe.skipIf(!haveCryptsetup())("in the LUKS2 token (real cryptsetup)", () => {
    it("the token carries the sealed key and tag; a rewritten token or another disk's token is refused", async () => {
      const [tpm, otherTpm] = await Promise.all([machine(), machine()]);
      const [disk, otherDisk] = await Promise.all([track(createLUKSFile()), track(createLUKSFile())]);
      const store = () => new AuthenticatedNodeState(new LUKSTokenNodeState(disk.path), new TPMKeySealer(tpm));
      await store().save(state);
      const token = (await readBootstrapToken(disk.path)) as Record<string, unknown>;
      expect(Object.keys(token).sort()).toEqual(["nodeState", "sealedKey", "tag"]);
      expect(await store().load()).toEqual(state);

      await updateBootstrapToken(disk.path, (cur) => ({ ...(cur as object), nodeState: { ...state, ownerID: "00".repeat(32) } }));
      expect((await caught(store().load())).message).toMatch(/HMAC tag in .*LUKS2 token.* does not match/);

      await new AuthenticatedNodeState(new LUKSTokenNodeState(otherDisk.path), new TPMKeySealer(otherTpm)).save(state);
      await writeBootstrapToken(disk.path, await readBootstrapToken(otherDisk.path));
      expect((await caught(store().load())).message).toMatch(/check "sealed by this TPM" failed/);
    });
  });
});

describe("a rebooted peer and its node state (in-process mesh, swtpm)", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  async function activated(): Promise<{ coord: TestPeer; node: TestPeer }> {
    mesh = new TestMesh({ updateIntervalMs: 100 });
    const coord = await mesh.startPeer("coord");
    const node = await mesh.startPeer("node1");
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: mesh.admin.publicKey, masterSecret: Buffer.alloc(32, 5), nodeEndpoints: [node.endpoint], coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toEqual([]);
    return { coord, node };
  }

  it("a peer restarted with intact state starts and re-joins", async () => {
    const { node } = await activated();
    const again = await mesh.restartPeer(node, { reboot: true });
    await until("the Node re-joins", () => again.peer.state === PeerState.IsNode, 20_000);
  });

  it("a Node whose node-state file the host pointed at another Coordinator refuses to start, naming the tag check", async () => {
    const { node } = await activated();
    const path = join(node.stateDir, "node-state.json");
    const record = JSON.parse(await readFile(path, "utf8"));
    record.nodeState.coordinatorEndpoints = ["127.0.0.1:1"];
    await writeFile(path, JSON.stringify(record));
    const err = await caught(mesh.restartPeer(node, { reboot: true }));
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toMatch(/node state: the HMAC tag in .*node-state.json does not match its contents/);
  });

  it("a Node given the Coordinator's node-state file (its blobs and tag) refuses to start", async () => {
    const { coord, node } = await activated();
    await writeFile(join(node.stateDir, "node-state.json"), await readFile(join(coord.stateDir, "node-state.json")));
    const err = await caught(mesh.restartPeer(node, { reboot: true }));
    expect(err.message).toMatch(/check "sealed by this TPM" failed/);
  });
});
