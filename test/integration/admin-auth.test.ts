import { randomBytes } from "node:crypto";
import { retryLines } from "../../src/cli/retry.js";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { runActivate } from "../../src/cli/activate.js";
import { main } from "../../src/cli/meshctl.js";
import { signAdminRequest } from "../../src/core/admin-auth.js";
import type { CoreError } from "../../src/core/errors.js";
import { PeerState } from "../../src/core/state.js";
import { activateAdditionalNodes, activateAsCoordinator, removePeer, sendActivateAdditionalNodes, signedAdminRequest } from "../../src/pubapi/admin.js";
import { PubAPIClient } from "../../src/pubapi/client.js";
import type { WireAdminRequest } from "../../src/pubapi/messages.js";
import { adminPayloadCodec } from "../../src/rpc/proto.js";
import type { FakeDisk, FakeVPN } from "../helpers/fakes.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { swtpmPolicy } from "../helpers/swtpm.js";
import { policyToJSON } from "../../src/attestation/policy.js";
import { until } from "../helpers/wait.js";

const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const secret = Buffer.from("admin auth test master secret!!!");

describe("admin RPCs need the admin's signature over a single-use challenge and the request", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  async function activated(): Promise<{ coord: TestPeer; node: TestPeer }> {
    mesh = new TestMesh({ withDisks: true });
    const coord = await mesh.startPeer("coord");
    const node = await mesh.startPeer("node");
    await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] }, () => {});
    return { coord, node };
  }

  const payload = (node: TestPeer) => adminPayloadCodec("ActivateAdditionalNodes").serialize({ nodePublicEndpoints: [node.endpoint] });
  const challenge = async (coord: TestPeer) => (await signedAdminRequest(coord.endpoint, mesh.credentials(false), mesh.admin, "RemoveNode", { vpnIp: "10.118.0.99" })).challenge;

  const cases: Array<{ name: string; request: (coord: TestPeer, node: TestPeer) => Promise<WireAdminRequest>; msg: RegExp }> = [
    { name: "no signature (unauthenticated)", request: async (_c, node) => ({ request: payload(node), challenge: Buffer.alloc(0), signature: Buffer.alloc(0) }), msg: /admin signature: missing/ },
    {
      name: "another key",
      request: async (coord, node) => {
        const c = await challenge(coord);
        return { request: payload(node), challenge: c, signature: signAdminRequest(nacl.sign.keyPair().secretKey, mesh.admin.clusterID, "ActivateAdditionalNodes", c, payload(node)) };
      },
      msg: /admin signature: does not verify/,
    },
    {
      name: "a signature for another method",
      request: async (coord, node) => {
        const c = await challenge(coord);
        return { request: payload(node), challenge: c, signature: signAdminRequest(mesh.admin.secretKey, mesh.admin.clusterID, "RemoveNode", c, payload(node)) };
      },
      msg: /admin signature: does not verify/,
    },
    {
      name: "other request bytes",
      request: async (coord, node) => {
        const signed = await signedAdminRequest(coord.endpoint, mesh.credentials(false), mesh.admin, "ActivateAdditionalNodes", { nodePublicEndpoints: ["127.0.0.1:1"] });
        return { ...signed, request: payload(node) };
      },
      msg: /admin signature: does not verify/,
    },
    {
      name: "a challenge the Coordinator never issued",
      request: async (_c, node) => {
        const c = randomBytes(32);
        return { request: payload(node), challenge: c, signature: signAdminRequest(mesh.admin.secretKey, mesh.admin.clusterID, "ActivateAdditionalNodes", c, payload(node)) };
      },
      msg: /admin challenge: unknown, expired or already used/,
    },
  ];
  for (const tc of cases) {
    it(`ActivateAdditionalNodes with ${tc.name} → PERMISSION_DENIED naming the check; nothing changes`, async () => {
      const { coord, node } = await activated();
      const before = await coord.peer.getUpdate(-1);
      const err = (await sendActivateAdditionalNodes(coord.endpoint, mesh.credentials(false), await tc.request(coord, node), () => {}).catch((e: CoreError) => e)) as CoreError;
      expect(err.code).toBe("permission-denied");
      expect(err.message).toMatch(tc.msg);
      expect(await coord.peer.getUpdate(-1)).toEqual(before);
      expect(node.peer.state).toBe(PeerState.AcceptingInit);
      expect(node.marker.marks).toBe(0);
      // The Coordinator's audit log has the refusal: unauthenticated caller, code, the failed check.
      const refused = auditLines(coord.logs, "ActivateAdditionalNodes");
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ level: "warn", msg: "rpc refused", code: "PERMISSION_DENIED", caller: "unauthenticated 127.0.0.1" });
      expect(refused[0].refusal).toMatch(tc.msg);
    });
  }

  it("the audit log names a signed admin call's caller as the admin, and every call once", async () => {
    const { coord, node } = await activated();
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [node.endpoint], () => {});
    expect(res.failed).toEqual([]);
    const [line, ...more] = auditLines(coord.logs, "ActivateAdditionalNodes");
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: "info", msg: "rpc", code: "OK", caller: "admin (signed request) at 127.0.0.1" });
    expect(typeof line.durationMs).toBe("number");
    // The Node's side: the Coordinator proved itself on the connection before it acted.
    expect(auditLines(node.logs, "ActivateAsNode")[0]).toMatchObject({ code: "OK", caller: "Coordinator (attested on this connection) at 127.0.0.1" });
    expect(auditLines(node.logs, "JoinCluster")[0]).toMatchObject({ code: "OK", caller: "Coordinator of this cluster (attested, cluster credential) at 127.0.0.1" });
    expect(auditLines(coord.logs, "GetAdminChallenge")[0]).toMatchObject({ code: "OK", caller: "unauthenticated 127.0.0.1" });
    // The key release names who got it, never the key.
    expect(coord.logs.join("\n")).not.toContain(secret.toString("hex"));
  });

  it("a replayed admin request is refused: its challenge was used", async () => {
    const { coord, node } = await activated();
    const signed = await signedAdminRequest(coord.endpoint, mesh.credentials(false), mesh.admin, "ActivateAdditionalNodes", { nodePublicEndpoints: [node.endpoint] });
    const ok = await sendActivateAdditionalNodes(coord.endpoint, mesh.credentials(false), signed, () => {});
    expect(ok.failed).toEqual([]);
    const before = await coord.peer.getUpdate(-1);
    const late = await mesh.startPeer("late");
    const replay = { ...signed };
    const err = (await sendActivateAdditionalNodes(coord.endpoint, mesh.credentials(false), replay, () => {}).catch((e: CoreError) => e)) as CoreError;
    expect(err.code).toBe("permission-denied");
    expect(err.message).toMatch(/admin challenge: unknown, expired or already used/);
    expect(await coord.peer.getUpdate(-1)).toEqual(before);
    expect(late.peer.state).toBe(PeerState.AcceptingInit);
  });

  it("GetAdminChallenge on a fresh peer is refused (only an activated Coordinator has an admin)", async () => {
    mesh = new TestMesh();
    const fresh = await mesh.startPeer("fresh");
    const err = (await signedAdminRequest(fresh.endpoint, mesh.credentials(false), mesh.admin, "RemoveNode", { vpnIp: "10.118.0.11" }).catch((e: CoreError) => e)) as CoreError;
    expect(err.code).toBe("failed-precondition");
  });

  it("meshctl remove-node takes a Node out: IP freed, disk UUID forgotten, devices drop it", async () => {
    mesh = new TestMesh({ withDisks: true, updateIntervalMs: 100 });
    const coord = await mesh.startPeer("coord");
    const [keep, gone] = await Promise.all([mesh.startPeer("keep"), mesh.startPeer("gone")]);
    const out = await mkdtemp(join(tmpdir(), "am-admin-"));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    try {
      expect(await runActivate({ coordinator: coord.endpoint, nodes: [keep.endpoint, gone.endpoint], coordinators: [], masterSecret: secret, outDir: out, credentials: mesh.credentials(true) }, io), lines.join("\n")).toBe(0);
      const goneIP = gone.vpn.vpnIP!;
      const policy = join(out, "measurements.json");
      await writeFile(policy, JSON.stringify(policyToJSON(swtpmPolicy())));
      const version = (await coord.peer.getUpdate(-1)).resourceVersion;
      await until("keep sees gone", () => keep.vpn.peers.some((p) => p.vpnIP === goneIP));
      // A key file others can read is refused before anything is sent.
      await chmod(join(out, "admin.key"), 0o644);
      expect(await main(["remove-node", "--coordinator", coord.endpoint, "--vpn-ip", goneIP, "--admin-dir", out, "--measurements", policy], io)).toBe(1);
      expect(lines.at(-1)).toMatch(/admin key .*readable by others/);
      await chmod(join(out, "admin.key"), 0o600);
      expect(await main(["remove-node", "--coordinator", coord.endpoint, "--vpn-ip", goneIP, "--admin-dir", out, "--measurements", policy], io), lines.join("\n")).toBe(0);
      expect(lines.at(-1)).toBe(`removed ${goneIP} (${gone.endpoint}); the peer set is now at resource version ${version + 1}`);
      const after = await coord.peer.getUpdate(-1);
      expect(after.resourceVersion).toBe(version + 1);
      expect(after.peers!.map((p) => p.vpnIP)).not.toContain(goneIP);
      await until("keep and the Coordinator drop gone", () => ![keep.vpn, coord.vpn].some((d: FakeVPN) => d.peers.some((p) => p.vpnIP === goneIP)));
      // Its disk key is never released again.
      const client = new PubAPIClient({ validators: mesh.validators(), issuer: coord.issuer });
      const err = (await client.requestStateDiskKey(coord.endpoint, (gone.disk as FakeDisk).diskUUID).catch((e: CoreError) => e)) as CoreError;
      client.close();
      expect(err.message).toMatch(/is not a disk of any activated peer/);
      // Its VPN IP goes to the next Node.
      const next = await mesh.startPeer("next");
      const res = await main(["add-nodes", "--coordinator", coord.endpoint, "--nodes", next.endpoint, "--admin-dir", out, "--measurements", policy], io);
      expect(res, lines.join("\n")).toBe(0);
      expect(next.vpn.vpnIP).toBe(goneIP);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it("a Node that fails after its peer record was written is named and taken out of the peer set again", async () => {
    const { coord, node } = await activated();
    const vpn = node.vpn;
    const apply = vpn.updatePeers.bind(vpn);
    let calls = 0;
    // The Node's device takes the first peer set (activation) and then refuses (its first update when joining).
    vpn.updatePeers = async (peers) => {
      if (++calls >= 2) throw new Error("fake: the device refuses the update");
      return apply(peers);
    };
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [node.endpoint], () => {});
    expect(res.failed).toHaveLength(1);
    expect(res.failed[0].endpoint).toBe(node.endpoint);
    expect(res.failed[0].error).toMatch(/JoinCluster/);
    // It got its disk key (its commit point) before failing: it is marked, a plain retry cannot work.
    expect(res.failed[0].marked).toBe(true);
    expect(node.marker.marks).toBe(1);
    expect(retryLines(res.failed, (eps) => `meshctl add-nodes --nodes ${eps.join(",")}`)).toEqual([
      `Reset, then retry (${node.endpoint} failed after receiving their activation and may have marked their TPM; give each a blank state disk and reboot it, which resets the marker): meshctl add-nodes --nodes ${node.endpoint}`,
    ]);
    const peers = (await coord.peer.getUpdate(-1)).peers!;
    expect(peers.filter((p) => p.role === "node")).toEqual([]);
    expect(coord.vpn.peers.some((p) => p.vpnIP === vpn.vpnIP)).toBe(false);
  });

  it("a RemoveNode for an unknown VPN IP is NOT_FOUND; for the Coordinator FAILED_PRECONDITION", async () => {
    const { coord } = await activated();
    const unknown = (await removePeer("RemoveNode", coord.endpoint, mesh.credentials(false), mesh.admin, "10.118.0.99").catch((e: CoreError) => e)) as CoreError;
    expect(unknown.code).toBe("not-found");
    const self = (await removePeer("RemoveNode", coord.endpoint, mesh.credentials(false), mesh.admin, "10.118.0.1").catch((e: CoreError) => e)) as CoreError;
    expect(self.code).toBe("failed-precondition");
    expect(self.message).toContain("use remove-coordinator");
    const selfAsCoordinator = (await removePeer("RemoveCoordinator", coord.endpoint, mesh.credentials(false), mesh.admin, "10.118.0.1").catch((e: CoreError) => e)) as CoreError;
    expect(selfAsCoordinator.code).toBe("failed-precondition");
    expect(selfAsCoordinator.message).toContain("is this Coordinator; ask another Coordinator to remove it");
  });
});

describe("a batch of new Nodes", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("sees each other at once: every Node, old and new, is told to update after the batch (no update interval passes)", async () => {
    // An hour between polls: only the Coordinator's triggers can spread the batch.
    mesh = new TestMesh({ attestation: "test", updateIntervalMs: 3_600_000, activationConcurrency: 1 });
    const coord = await mesh.startPeer("coord");
    const nodes = await Promise.all([1, 2, 3].map((i) => mesh.startPeer(`node${i}`)));
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: mesh.admin.publicKey, masterSecret: Buffer.from("batch test master secret, 32 by."), nodeEndpoints: nodes.map((n) => n.endpoint), coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toEqual([]);
    for (const n of nodes) {
      for (const other of nodes.filter((x) => x !== n)) expect(n.vpn.peers.map((p) => p.vpnIP), `${n.name} lists ${other.name}`).toContain(other.vpn.vpnIP);
    }
  });
});

/** auditLines are the audit log lines (JSON, audit: true) of `method` in `logs`. */
function auditLines(logs: readonly string[], method: string): Array<Record<string, unknown>> {
  return logs
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.audit === true && l.method === method);
}
