import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import type { CoreError } from "../../src/core/errors.js";
import { PeerState } from "../../src/core/state.js";
import { activateAdditionalNodes, activateAsCoordinator } from "../../src/pubapi/admin.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import { TestMesh } from "../helpers/mesh.js";

const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const secret = Buffer.from("concurrency test master secret!!");

describe("concurrent activations and polls", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("exactly one of five parallel ActivateAsCoordinator calls wins; the rest get FAILED_PRECONDITION", async () => {
    mesh = new TestMesh();
    const coord = await mesh.startPeer("coord");
    const nodes = await Promise.all([0, 1, 2, 3, 4].map((i) => mesh.startPeer(`n${i}`)));
    const results = await Promise.allSettled(
      nodes.map((n) =>
        activateAsCoordinator(coord.endpoint, mesh.credentials(false), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [n.endpoint], coordinatorEndpoints: [] }, () => {}),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.flatMap((r) => (r.status === "rejected" ? [r.reason as CoreError] : []));
    expect(won).toHaveLength(1);
    // The winner's Node was activated (a failure here names its reason, not only a count).
    expect(won[0].value.failed).toEqual([]);
    expect(lost).toHaveLength(4);
    for (const e of lost) expect(e.code).toBe("failed-precondition");
    expect(coord.marker.marks).toBe(1);
    expect(nodes.filter((n) => n.peer.state === PeerState.IsNode)).toHaveLength(1);
    expect(nodes.filter((n) => n.peer.state === PeerState.AcceptingInit)).toHaveLength(4);
  });

  it("parallel ActivateAdditionalNodes calls and update polls never hand out a VPN IP twice", async () => {
    mesh = new TestMesh({ updateIntervalMs: 50 });
    const coord = await mesh.startPeer("coord");
    const first = await mesh.startPeer("first");
    await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [first.endpoint], coordinatorEndpoints: [] }, () => {});
    const batches = await Promise.all([0, 1, 2, 3].map((b) => Promise.all([0, 1, 2].map((i) => mesh.startPeer(`b${b}n${i}`)))));
    const poller = new VPNAPIClient(mesh.vpnapi.get("10.118.0.1")!);
    let polling = true;
    let polls = 0;
    const pollLoop = (async () => {
      let v = 0;
      while (polling) {
        const u = await poller.getUpdate(v, "10.118.0.12");
        if (u.peers) v = u.resourceVersion;
        polls++;
      }
    })();
    // Each batch also includes one endpoint of another batch: exactly one activation of it may win.
    const shared = batches[0][0].endpoint;
    const results = await Promise.all(
      batches.map((batch, b) =>
        activateAdditionalNodes(coord.endpoint, mesh.credentials(false), mesh.admin, [...batch.map((n) => n.endpoint), ...(b > 0 ? [shared] : [])], () => {}),
      ),
    );
    polling = false;
    await pollLoop;
    poller.close();
    expect(polls).toBeGreaterThan(0);
    const activated = results.flatMap((r) => r.activated);
    expect(activated).toHaveLength(12);
    const failed = results.flatMap((r) => r.failed);
    expect(failed.every((f) => f.endpoint === shared)).toBe(true);
    expect(failed).toHaveLength(3);
    const peers = (await coord.peer.getUpdate(-1)).peers!;
    const ips = peers.map((p) => p.vpnIP);
    expect(new Set(ips).size).toBe(ips.length);
    expect(peers.filter((p) => p.role === "node")).toHaveLength(13);
    const deviceIPs = mesh.peers.filter((p) => p.vpn.vpnIP).map((p) => p.vpn.vpnIP);
    expect(new Set(deviceIPs).size).toBe(deviceIPs.length);
  });
});
