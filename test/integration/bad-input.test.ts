import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import type { CoreError } from "../../src/core/errors.js";
import { PeerState } from "../../src/core/state.js";
import { activateAdditionalNodes, activateAsCoordinator, type ActivateRequest } from "../../src/pubapi/admin.js";
import { newPubAPIClient } from "../../src/pubapi/client.js";
import type { FakeDisk } from "../helpers/fakes.js";
import { freePort, TestMesh, type TestPeer } from "../helpers/mesh.js";

const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const secret = Buffer.from("correct horse battery staple 42!");

async function activationError(mesh: TestMesh, coord: TestPeer, req: Partial<ActivateRequest>): Promise<CoreError> {
  const full: ActivateRequest = { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [], ...req };
  return activateAsCoordinator(coord.endpoint, mesh.credentials(true), full, () => {}).then(
    () => {
      throw new Error("activation unexpectedly succeeded");
    },
    (err: CoreError) => err,
  );
}

describe("bad input gets a clear error and loses nothing", () => {
  let mesh: TestMesh;
  let coord: TestPeer;
  beforeEach(async () => {
    mesh = new TestMesh({ withDisks: true });
    coord = await mesh.startPeer("coord");
  });
  afterEach(async () => mesh.close());

  const cases: Array<{ name: string; req: Partial<ActivateRequest>; code: string; msg: RegExp }> = [
    { name: "empty master secret", req: { masterSecret: Buffer.alloc(0) }, code: "invalid-argument", msg: /masterSecret: must be 16 to 64 bytes, got 0/ },
    { name: "short master secret", req: { masterSecret: Buffer.alloc(8, 1) }, code: "invalid-argument", msg: /masterSecret: .*got 8/ },
    { name: "wrong-length admin key", req: { adminVPNPubKey: Buffer.alloc(31).toString("base64") }, code: "invalid-argument", msg: /adminVPNPubKey: must be 32 bytes, got 31/ },
    { name: "malformed node endpoint", req: { nodeEndpoints: ["not an endpoint"] }, code: "invalid-argument", msg: /nodeEndpoints\[0\]/ },
    { name: "node endpoint without port", req: { nodeEndpoints: ["10.0.0.1"] }, code: "invalid-argument", msg: /nodeEndpoints\[0\]: missing port/ },
    { name: "bad IPv4", req: { nodeEndpoints: ["10.0.0.300:9000"] }, code: "invalid-argument", msg: /nodeEndpoints\[0\]: not an IPv4 address/ },
    { name: "duplicate node", req: { nodeEndpoints: ["10.0.0.1:9000", "10.0.0.1:9000"] }, code: "invalid-argument", msg: /nodeEndpoints\[1\]: 10.0.0.1:9000 appears twice/ },
    { name: "port out of range", req: { nodeEndpoints: ["10.0.0.1:70000"] }, code: "invalid-argument", msg: /port must be 1-65535/ },
    {
      name: "257 node endpoints (bounded work per call)",
      req: { nodeEndpoints: Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${(i & 255) + 1}:9000`) },
      code: "resource-exhausted",
      msg: /nodeEndpoints: at most 256 per call, got 257/,
    },
  ];
  for (const tc of cases) {
    it(`${tc.name} → ${tc.code}, and the peer can still be activated`, async () => {
      const err = await activationError(mesh, coord, tc.req);
      expect(err.code).toBe(tc.code);
      expect(err.message).toMatch(tc.msg);
      expect(coord.peer.state).toBe(PeerState.AcceptingInit);
      expect(coord.marker.marks).toBe(0);
      const cfg = await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] }, () => {});
      expect(cfg.coordinator.vpnIP).toBe("10.118.0.1");
    });
  }

  it("a second ActivateAsCoordinator is refused and changes nothing", async () => {
    const node = await mesh.startPeer("node");
    await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [node.endpoint], coordinatorEndpoints: [] }, () => {});
    expect(coord.peer.state).toBe(PeerState.ActivatingNodes);
    const before = await coord.peer.getUpdate(-1);
    const marks = coord.marker.marks;
    const key = await coord.peer.getVPNPublicKey();
    const passphrase = Buffer.from((coord.disk as FakeDisk).passphrase);
    // aTLS already refuses a non-fresh peer for activation; without requireFresh the core refuses too.
    const viaFresh = await activationError(mesh, coord, {});
    expect(viaFresh.message).toMatch(/aTLS: .*fresh marker/);
    const err = await activateAsCoordinator(coord.endpoint, mesh.credentials(false), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: Buffer.from("another secret of enough length"), nodeEndpoints: [], coordinatorEndpoints: [] }, () => {}).catch((e: CoreError) => e);
    // Only the activation this Coordinator committed (same master secret and admin keys) may be re-run.
    expect((err as CoreError).code).toBe("permission-denied");
    expect((err as CoreError).message).toMatch(/is an activated Coordinator, and the request is not the activation it committed/);
    expect(await coord.peer.getUpdate(-1)).toEqual(before);
    expect(coord.marker.marks).toBe(marks);
    expect(await coord.peer.getVPNPublicKey()).toBe(key);
    expect((coord.disk as FakeDisk).passphrase).toEqual(passphrase);
    expect(node.peer.state).toBe(PeerState.IsNode);
  });

  it("an unreachable node is reported by name, the others stay activated, add-nodes retries it", async () => {
    const good = await mesh.startPeer("good");
    const port = await freePort();
    const lines: string[] = [];
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [good.endpoint, `127.0.0.1:${port}`], coordinatorEndpoints: [] },
      (l) => lines.push(l),
    );
    expect(cfg.failed).toHaveLength(1);
    expect(cfg.failed[0].endpoint).toBe(`127.0.0.1:${port}`);
    expect(cfg.failed[0].marked).toBe(false); // nothing reached it: still fresh, a plain retry works
    expect(lines.join("\n")).toContain(`FAILED to activate Node 127.0.0.1:${port}`);
    expect(good.peer.state).toBe(PeerState.IsNode);

    const late = await mesh.startPeer("late", { port });
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [`127.0.0.1:${port}`], () => {});
    expect(res.failed).toEqual([]);
    expect(late.peer.state).toBe(PeerState.IsNode);
    const ips = (await coord.peer.getUpdate(-1)).peers!.map((p) => p.vpnIP);
    expect(new Set(ips).size).toBe(ips.length);
    expect(mesh.logs.join("\n")).not.toContain(secret.toString());
  });

  it("a node already activated is refused with FAILED_PRECONDITION and keeps its state", async () => {
    const node = await mesh.startPeer("node");
    await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [node.endpoint], coordinatorEndpoints: [] }, () => {});
    const vpnIP = node.vpn.vpnIP;
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [node.endpoint], () => {});
    expect(res.failed).toHaveLength(1);
    expect(res.failed[0].error).toMatch(/fresh|FAILED_PRECONDITION|AcceptingInit/);
    expect(node.peer.state).toBe(PeerState.IsNode);
    expect(node.vpn.vpnIP).toBe(vpnIP);
    expect(node.marker.marks).toBe(1);
  });

  describe("ActivateAsNode stream protocol", () => {
    const open = (peer: TestPeer) => {
      const client = newPubAPIClient(peer.endpoint, mesh.credentials(true));
      const call = client.ActivateAsNode();
      return { client, call };
    };
    const outcome = (call: ReturnType<typeof open>["call"]) =>
      new Promise<grpc.ServiceError>((resolve) => {
        call.on("data", () => {});
        call.on("error", (e: grpc.ServiceError) => resolve(e));
      });

    it("a first message that is not initial_request → INVALID_ARGUMENT naming it", async () => {
      const node = await mesh.startPeer("node");
      const { client, call } = open(node);
      const done = outcome(call);
      call.write({ stateDiskKey: Buffer.alloc(32) });
      const err = await done;
      client.close();
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/first message must be initial_request, got stateDiskKey/);
      expect(node.peer.state).toBe(PeerState.AcceptingInit);
    });

    const badInitial = [
      { name: "node VPN IP outside the node pool", patch: { nodeVpnIp: "10.118.0.5" }, msg: /nodeVPNIP: 10.118.0.5 is not in the Node pool/ },
      { name: "malformed node VPN IP", patch: { nodeVpnIp: "10.118.0" }, msg: /nodeVPNIP: not an IP address/ },
      { name: "short owner ID", patch: { ownerId: Buffer.alloc(5) }, msg: /ownerID: must be 32 bytes, got 5/ },
      { name: "wrong-length peer key", patch: { peers: [{ role: "coordinator", publicIp: "127.0.0.1", vpnIp: "10.118.0.1", vpnPubKey: Buffer.alloc(16), wgPort: 1, pubapiPort: 1 }] }, msg: /peers\[0\].vpnPubKey: must be 32 bytes, got 16/ },
      { name: "no Coordinator", patch: { coordinatorVpnIps: [] }, msg: /coordinatorVPNIPs: at least one is needed/ },
      { name: "short cluster credential", patch: { coordinatorAuthPubKey: Buffer.alloc(31) }, msg: /coordinatorAuthPubKey: must be 32 bytes, got 31/ },
    ];
    for (const tc of badInitial) {
      it(`initial_request with ${tc.name} → INVALID_ARGUMENT, peer stays fresh`, async () => {
        const node = await mesh.startPeer("node");
        const { client, call } = open(node);
        const done = outcome(call);
        call.write({
          initialRequest: {
            nodeVpnIp: "10.118.0.50",
            peers: [{ role: "coordinator", publicIp: "127.0.0.1", vpnIp: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 3), wgPort: 1, pubapiPort: 1 }],
            ownerId: Buffer.alloc(32, 1),
            clusterId: Buffer.alloc(32, 2),
            coordinatorVpnIps: ["10.118.0.1"],
            coordinatorPublicEndpoints: [],
            coordinatorAuthPubKey: Buffer.alloc(32, 4),
            ...tc.patch,
          },
        });
        const err = await done;
        client.close();
        expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err.details).toMatch(tc.msg);
        expect(node.peer.state).toBe(PeerState.AcceptingInit);
        expect(node.marker.marks).toBe(0);
      });
    }
  });
});
