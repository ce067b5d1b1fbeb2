import * as grpc from "@grpc/grpc-js";
import { createHash, generateKeyPairSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { CoordinatorCredential } from "../../src/core/coordinator-auth.js";
import type { CoreError } from "../../src/core/errors.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { activateAdditionalNodes } from "../../src/pubapi/admin.js";
import { PubAPIClient } from "../../src/pubapi/client.js";
import { ProvenChannel } from "../../src/pubapi/connect.js";
import type { FakeDisk } from "../helpers/fakes.js";
import { exists, proofAs, sendProven, startActivation, type ProofMaker } from "../helpers/caller.js";
import { TestMesh, type TestPeer } from "../helpers/mesh.js";
import { until } from "../helpers/wait.js";

const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const secret = Buffer.from("caller auth test master secret!!");
const otherSecret = Buffer.from("another cluster's master secret!");

describe("a Node acts only for a Coordinator proven on the call's own connection", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  async function activated(nodes = 1, masterSecret = secret): Promise<{ coord: TestPeer; nodes: TestPeer[]; clusterID: Buffer }> {
    const coord = await mesh.startPeer(`coord${mesh.peers.length}`);
    const ns = await Promise.all(Array.from({ length: nodes }, (_, i) => mesh.startPeer(`node${mesh.peers.length}-${i}`)));
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret, nodeEndpoints: ns.map((n) => n.endpoint), coordinatorEndpoints: [] },
      () => {},
    );
    expect(cfg.failed).toEqual([]);
    return { coord, nodes: ns, clusterID: cfg.clusterID };
  }

  async function expectFresh(node: TestPeer): Promise<void> {
    expect(node.peer.state).toBe(PeerState.AcceptingInit);
    expect(node.marker.marks).toBe(0);
    expect((await node.marker.read()).kind).toBe("fresh");
    expect(await exists(node.stateDir, "node-state.json")).toBe(false);
  }

  /** squat runs ActivateAsNode against a fresh Node with a proof and returns the error. */
  async function squat(caller: TestPeer, node: TestPeer, makeProof: ProofMaker): Promise<grpc.ServiceError | undefined> {
    const peers = (await caller.peer.getUpdate(-1).catch(() => undefined))?.peers ?? [];
    const a = await startActivation(node, mesh.validators(), caller.issuer, makeProof, peers.length ? peers : fakeCoordinator());
    const err = await a.outcome;
    a.close();
    return err;
  }

  const squats: Array<{ name: string; proof: (coord: TestPeer) => ProofMaker; msg: RegExp }> = [
    { name: "no proof", proof: () => async () => null, msg: /ActivateAsNode: caller proof: missing/ },
    {
      name: "a document made for another connection (replayed)",
      proof: (coord) => async () => {
        // An honest proof, but made on another connection (to another fresh peer): relayed here.
        const other = await mesh.startPeer("other");
        const ch = new ProvenChannel(other.endpoint, mesh.validators(), coord.issuer, true);
        const proof = await ch.proof(Date.now() + 10_000, undefined);
        ch.close();
        return proof;
      },
      msg: /ActivateAsNode: caller proof: tpm nonce/,
    },
    {
      name: "a certificate-style document (userData = SHA-256 of a key) for this connection",
      proof: (coord) => async (_ch, ekm) => {
        const spki = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
        const doc = await coord.issuer.issue(ekm, createHash("sha256").update(spki).digest());
        return { oid: coord.issuer.oid, document: Buffer.from(doc), clusterSignature: Buffer.alloc(0) };
      },
      msg: /ActivateAsNode: caller proof: tpm userData/,
    },
    { name: "an unknown platform", proof: (_coord) => async (ch) => ({ ...(await ch.proof(Date.now() + 10_000, undefined)), oid: "2.25.1" }), msg: /caller proof: platform "2.25.1" is not accepted/ },
  ];
  for (const tc of squats) {
    it(`squatting a fresh Node with ${tc.name} is refused with PERMISSION_DENIED; the Node stays fresh`, async () => {
      mesh = new TestMesh({ withDisks: true });
      const { coord } = await activated(0);
      const node = await mesh.startPeer("victim");
      const err = await squat(coord, node, tc.proof(coord));
      expect(err?.code, err?.details).toBe(grpc.status.PERMISSION_DENIED);
      expect(err?.details).toMatch(tc.msg);
      await expectFresh(node);
    });
  }

  it("a truncated stream from a proven Coordinator (initial_request, then nothing) leaves the peer fresh; a real activation then succeeds", async () => {
    mesh = new TestMesh({ withDisks: true });
    const { coord } = await activated(0);
    const node = await mesh.startPeer("victim");
    const peers = (await coord.peer.getUpdate(-1)).peers!;
    const a = await startActivation(node, mesh.validators(), coord.issuer, proofAs(), peers);
    expect(await a.first).toMatchObject({ stateDiskUuid: expect.stringMatching(/-/) });
    // While the stream holds its reservation, another activation is refused and changes nothing.
    const second = await startActivation(node, mesh.validators(), coord.issuer, proofAs(), peers);
    const refused = await second.outcome;
    second.close();
    expect(refused?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused?.details).toMatch(/reserved by an ongoing ActivateAsNode/);
    a.call.end();
    const err = await a.outcome;
    a.close();
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/stream ended before state_disk_key/);
    await expectFresh(node);
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [node.endpoint], () => {});
    expect(res.failed).toEqual([]);
    expect(node.peer.state).toBe(PeerState.IsNode);
    expect(node.marker.marks).toBe(1);
  });

  it("a stream cancelled by its proven caller after initial_request releases the reservation", async () => {
    mesh = new TestMesh({ withDisks: true });
    const { coord } = await activated(0);
    const node = await mesh.startPeer("victim");
    const a = await startActivation(node, mesh.validators(), coord.issuer, proofAs(), (await coord.peer.getUpdate(-1)).peers!);
    await a.first;
    a.call.cancel();
    a.close();
    await until("the reservation is released", async () => {
      const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [node.endpoint], () => {});
      return res.failed.length === 0;
    });
    expect(node.peer.state).toBe(PeerState.IsNode);
  });

  it("a Coordinator of another cluster cannot TriggerNodeUpdate, JoinCluster or PushStateDiskKey a Node", async () => {
    mesh = new TestMesh({ withDisks: true });
    const { nodes } = await activated(1, secret);
    const { coord: other, clusterID: otherCluster } = await activated(0, otherSecret);
    const node = nodes[0];
    const foreign = CoordinatorCredential.derive(otherSecret, otherCluster);
    const client = new PubAPIClient({ validators: mesh.validators(), issuer: other.issuer });
    try {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["TriggerNodeUpdate", () => client.triggerNodeUpdate(node.endpoint, foreign)],
        ["JoinCluster", () => client.joinCluster(node.endpoint, "10.118.0.1", foreign)],
        ["PushStateDiskKey", () => client.pushStateDiskKey(node.endpoint, (node.disk as FakeDisk).diskUUID, Buffer.alloc(32, 9), foreign)],
      ];
      for (const [name, call] of calls) {
        const err = (await call().catch((e: CoreError) => e)) as CoreError;
        expect(err.code, name).toBe("permission-denied");
        expect(err.message).toMatch(new RegExp(`${name}: cluster credential: the caller did not sign this connection`));
      }
    } finally {
      client.close();
    }
    expect(node.peer.state).toBe(PeerState.IsNode);
  });

  it("a cluster signature relayed from another connection is refused", async () => {
    mesh = new TestMesh({ withDisks: true });
    const { coord, nodes, clusterID } = await activated(1);
    const credential = CoordinatorCredential.derive(secret, clusterID);
    const a = new ProvenChannel(nodes[0].endpoint, mesh.validators(), coord.issuer, false);
    const proofA = await a.proof(Date.now() + 10_000, credential);
    const err = await sendProven(nodes[0].endpoint, mesh.validators(), coord.issuer, "TriggerNodeUpdate", async () => proofA, (callerProof) => ({ callerProof })).catch(
      (e: grpc.ServiceError) => e,
    );
    a.close();
    expect((err as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((err as grpc.ServiceError).details).toMatch(/TriggerNodeUpdate: cluster credential/);
    // The honest caller, on its own connection, is accepted.
    const ok = await sendProven(nodes[0].endpoint, mesh.validators(), coord.issuer, "TriggerNodeUpdate", async (ch) => ch.proof(Date.now() + 10_000, credential), (callerProof) => ({
      callerProof,
    }));
    expect(ok.resourceVersion).toBeGreaterThan(0);
  });

  it("a rebooted Node refuses a disk key pushed by an unproven caller or another cluster's Coordinator, and still re-joins", async () => {
    mesh = new TestMesh({ withDisks: true });
    const { coord, nodes } = await activated(1);
    const { coord: other, clusterID: otherCluster } = await activated(0, otherSecret);
    const node = nodes[0];
    const uuid = (node.disk as FakeDisk).diskUUID;
    // The Coordinator is away: the rebooted Node waits for its key.
    await coord.stopSoftware();
    const again = await mesh.restartPeer(node, { reboot: true });
    await until("the Node asks for its disk key", () => again.logs.some((l) => l.includes("no disk key yet")));
    const hostMade = Buffer.alloc(32, 7);
    const unproven = await sendProven(again.endpoint, mesh.validators(), other.issuer, "PushStateDiskKey", async () => null, (callerProof) => ({ diskUuid: uuid, stateDiskKey: hostMade, callerProof })).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((unproven as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((unproven as grpc.ServiceError).details).toMatch(/PushStateDiskKey: caller proof: missing/);
    const foreign = CoordinatorCredential.derive(otherSecret, otherCluster);
    const client = new PubAPIClient({ validators: mesh.validators(), issuer: other.issuer });
    const err = (await client.pushStateDiskKey(again.endpoint, uuid, hostMade, foreign).catch((e: CoreError) => e)) as CoreError;
    client.close();
    expect(err.code).toBe("permission-denied");
    expect(again.peer.state).toBe(PeerState.NodeWaitingForClusterJoin);
    await mesh.restartPeer(coord);
    await until("the Node re-joins with the key from its own Coordinator", () => again.peer.state === PeerState.IsNode, 30_000);
  });
});

/** fakeCoordinator is a minimal peer set for initial_request when no real Coordinator is involved. */
function fakeCoordinator() {
  return [{ role: "coordinator" as const, publicIP: "127.0.0.1", vpnIP: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 3).toString("base64"), wgPort: 1, pubapiPort: 1 }];
}
