/**
 * A Coordinator that reboots with its state locked (its store and master secret are on the locked
 * disk): it gets its disk key from another live Coordinator, or — when none is left — from the
 * admin through `meshctl recover`. Real LUKS2 files (cryptsetup), swtpm TPMs (the real marker),
 * real gRPC over aTLS; attacks on the recovery path are refused and leave the peer waiting.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { policyToJSON } from "../../src/attestation/policy.js";
import { runActivate } from "../../src/cli/activate.js";
import { main } from "../../src/cli/meshctl.js";
import { CoordinatorCredential } from "../../src/core/coordinator-auth.js";
import { stateDiskKey } from "../../src/core/keys.js";
import { PeerState } from "../../src/core/state.js";
import { cryptsetupUUID, opensWithKeyFile } from "../helpers/luks.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { swtpmPolicy } from "../helpers/swtpm.js";
import { caught, until } from "../helpers/wait.js";

const masterSecret = Buffer.from("recovery test master secret, 32");

describe("Coordinator reboot with a locked state disk", () => {
  let mesh: TestMesh;
  let out = "";
  afterEach(async () => {
    await mesh?.close();
    if (out) await rm(out, { recursive: true, force: true });
  });

  /** activate runs `meshctl activate` (in process) and returns the admin dir and the cluster ID. */
  async function activate(coordinator: TestPeer, nodes: TestPeer[], coordinators: TestPeer[] = []): Promise<Buffer> {
    out = await mkdtemp(join(tmpdir(), "am-recover-"));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const code = await runActivate(
      { coordinator: coordinator.endpoint, nodes: nodes.map((n) => n.endpoint), coordinators: coordinators.map((c) => c.endpoint), masterSecret, outDir: out, credentials: mesh.credentials(true) },
      io,
    );
    expect(code, lines.join("\n")).toBe(0);
    await writeFile(join(out, "master-secret"), masterSecret, { mode: 0o600 });
    await writeFile(join(out, "measurements.json"), JSON.stringify(policyToJSON(swtpmPolicy())));
    return Buffer.from(JSON.parse(await readFile(join(out, "admin.json"), "utf8")).clusterId, "hex");
  }

  const recover = async (endpoint: string, secretFile = join(out, "master-secret")): Promise<{ code: number; text: string }> => {
    const lines: string[] = [];
    const code = await main(["recover", "--endpoint", endpoint, "--master-secret", secretFile, "--measurements", join(out, "measurements.json"), "--admin-dir", out], {
      out: (l) => lines.push(l),
      err: (l) => lines.push(l),
    });
    return { code, text: lines.join("\n") };
  };

  const explain = (p: TestPeer) => (e: Error) => {
    throw new Error(`${e.message}\n${p.logs.slice(-12).join("\n")}`);
  };

  it("gets its key from the other live Coordinator, unlocks, and serves again", async () => {
    mesh = new TestMesh({ withDisks: "luks", sharedStore: true, updateIntervalMs: 100 });
    const [c1, c2, n1] = await Promise.all(["c1", "c2", "n1"].map((n) => mesh.startPeer(n)));
    const clusterID = await activate(c1, [n1], [c2]);
    const uuid = await cryptsetupUUID(c2.hardware.luks!.path);

    const again = await mesh.restartPeer(c2, { reboot: true, lockedState: true });
    await until("c2 is a Coordinator again", () => again.peer.coordinatorVPNIP === "10.118.0.2", 30_000).catch(explain(again));
    expect(again.logs.join("\n")).toMatch(/state disk is locked|waiting for its key from another Coordinator/);
    expect(again.logs.join("\n")).toContain("state disk unlocked with the delivered key");
    expect(again.peer.waitingDiskUUID).toBeUndefined();
    // It serves the peer set again, and its own device lists the others.
    await until("c2 lists c1 and n1", () => ["10.118.0.1", n1.vpn.vpnIP].every((ip) => again.vpn.peers.some((p) => p.vpnIP === ip)), 10_000);
    expect((await again.peer.getUpdate(0)).peers?.length).toBeGreaterThanOrEqual(4);
    expect(await opensWithKeyFile(c2.hardware.luks!.path, stateDiskKey(masterSecret, clusterID, uuid))).toBe(true);
    expect(mesh.logs.join("\n")).not.toContain(Buffer.from(stateDiskKey(masterSecret, clusterID, uuid)).toString("hex"));
  }, 90_000);

  it("the only Coordinator waits for meshctl recover; forged, relayed and misdirected recoveries are refused; then its Node re-joins", async () => {
    mesh = new TestMesh({ withDisks: "luks", updateIntervalMs: 100 });
    const [c1, n1, fresh] = await Promise.all(["c1", "n1", "fresh"].map((n) => mesh.startPeer(n)));
    const clusterID = await activate(c1, [n1]);
    const uuid = await cryptsetupUUID(c1.hardware.luks!.path);
    const nodeUUID = await cryptsetupUUID(n1.hardware.luks!.path);
    const nodeVPNIP = n1.vpn.vpnIP;

    const c = await mesh.restartPeer(c1, { reboot: true, lockedState: true });
    const n = await mesh.restartPeer(n1, { reboot: true });
    await until("c1 waits for its disk key", () => c.peer.waitingDiskUUID === uuid, 10_000).catch(explain(c));
    expect(c.logs.join("\n")).toContain("only meshctl recover can deliver it");
    // Nothing can be done through it meanwhile, and it says why.
    expect(String(await caught(Promise.resolve().then(() => c.peer.getAdminChallenge())))).toMatch(/waits for its state-disk key after a reboot: meshctl recover/);

    // The core refuses what a host could send: no valid signature, another cluster's, one made for
    // another connection (relay), and a key that does not open the disk. The peer keeps waiting.
    const ekm = Buffer.alloc(32, 7);
    const key = stateDiskKey(masterSecret, clusterID, uuid);
    const other = CoordinatorCredential.derive(Buffer.from("another cluster's master secret!"), clusterID);
    const own = CoordinatorCredential.derive(masterSecret, clusterID);
    expect(String(await caught(c.peer.recoverStateDiskKey(ekm, uuid, key, other.signRecovery(ekm))))).toMatch(/cluster credential: the caller did not sign this connection/);
    expect(String(await caught(c.peer.recoverStateDiskKey(ekm, uuid, key, own.signRecovery(Buffer.alloc(32, 8)))))).toMatch(/cluster credential/);
    // A Coordinator's connection signature is not a recovery signature (separate domains).
    expect(String(await caught(c.peer.recoverStateDiskKey(ekm, uuid, key, own.signConnection(ekm))))).toMatch(/cluster credential/);
    expect(String(await caught(c.peer.recoverStateDiskKey(ekm, uuid, Buffer.alloc(32, 1), own.signRecovery(ekm))))).toMatch(/key|passphrase|keyslot/i);
    expect(String(await caught(c.peer.recoverStateDiskKey(ekm, nodeUUID, key, own.signRecovery(ekm))))).toMatch(/not waiting for the key of disk/);
    expect(c.peer.waitingDiskUUID).toBe(uuid);

    // meshctl refuses before sending anything: another master secret; a fresh peer (no cluster
    // marker); a rebooted Node (it takes keys only from its Coordinators).
    await writeFile(join(out, "other-secret"), Buffer.from("another cluster's master secret!"), { mode: 0o600 });
    const wrongSecret = await recover(c.endpoint, join(out, "other-secret"));
    expect(wrongSecret.code).not.toBe(0);
    expect(wrongSecret.text).toMatch(/not the secret of the cluster in .*admin\.json.*nothing was sent/);
    const toFresh = await recover(fresh.endpoint);
    expect(toFresh.code).not.toBe(0);
    expect(toFresh.text).toMatch(/cluster marker: PCR 11 is zero \(a fresh peer\)/);
    const toNode = await recover(n.endpoint);
    expect(toNode.code).not.toBe(0);
    expect(toNode.text).toMatch(/not a rebooted Coordinator waiting for its disk key/);
    expect(c.peer.waitingDiskUUID).toBe(uuid);

    const ok = await recover(c.endpoint);
    expect(ok.code, ok.text).toBe(0);
    expect(ok.text).toContain(`delivered the key of state disk ${uuid}`);
    await until("c1 is the Coordinator again", () => c.peer.coordinatorVPNIP === "10.118.0.1", 20_000).catch(explain(c));
    await until("n1 re-joins", () => n.peer.state === PeerState.IsNode, 30_000).catch(explain(n));
    expect(n.vpn.vpnIP).toBe(nodeVPNIP);
    // A second recovery finds nothing to do.
    const again = await recover(c.endpoint);
    expect(again.code).not.toBe(0);
    expect(again.text).toMatch(/waits for no state-disk key: there is nothing to recover/);
    for (const [p, u] of [[c1, uuid], [n1, nodeUUID]] as const) {
      expect(await opensWithKeyFile(p.hardware.luks!.path, stateDiskKey(masterSecret, clusterID, u)), p.name).toBe(true);
    }
    expect(mesh.logs.join("\n")).not.toContain(Buffer.from(key).toString("hex"));
  }, 120_000);
});
