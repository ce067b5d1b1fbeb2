/**
 * Regression (review finding, critical): an admin signature is bound to the method, a single-use challenge and the request
 * bytes, but not to the admin's cluster (ownerID/clusterID from admin.json), and meshctl does not
 * check that the Coordinator it reaches is a Coordinator of that cluster. The admin's Ed25519 public
 * key is public (admin.json carries it). So the host activates a genuine peer of its own
 * (ActivateAsCoordinator is open to anyone on a fresh peer) with the victim admin's public key and a
 * master secret the host chose, redirects the admin's `meshctl add-nodes` to it, and the admin's
 * own signature makes the admin's new Node join the host's cluster: the host knows that Node's
 * disk key and every data key it will ask for.
 *
 * Defence: the admin signs the clusterID of admin.json and the Coordinator verifies the signature
 * with its own cluster ID, so a signed request reaching a Coordinator of another cluster is refused
 * and no Node is activated.
 */
import nacl from "tweetnacl";
import { afterEach, describe, expect, it } from "vitest";
import type { CoreError } from "../../src/core/errors.js";
import { deriveOwnerID } from "../../src/core/keys.js";
import { PeerState } from "../../src/core/state.js";
import { activateAdditionalNodes, activateAsCoordinator } from "../../src/pubapi/admin.js";
import { TestMesh } from "../helpers/mesh.js";

const wgKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const adminSecret = Buffer.from("victim admin master secret 32 b!");
const hostSecret = Buffer.from("host's own master secret, 32 b!!");

describe("an admin signature only works in the admin's own cluster", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("add-nodes redirected to the host's Coordinator (same admin public key) is refused; the Node stays fresh", async () => {
    mesh = new TestMesh({ withDisks: true });
    const victimCoord = await mesh.startPeer("victim-coord");
    const hostCoord = await mesh.startPeer("host-coord");
    const node = await mesh.startPeer("node");
    // The admin activates their Coordinator; admin.json records its ownerID and clusterID.
    const adminCfg = await activateAsCoordinator(
      victimCoord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: wgKey(), adminPubKey: mesh.admin.publicKey, masterSecret: adminSecret, nodeEndpoints: [], coordinatorEndpoints: [] },
      () => {},
    );
    expect(adminCfg.ownerID.equals(deriveOwnerID(adminSecret))).toBe(true);
    // The host activates a genuine fresh peer of its own with the admin's PUBLIC key and its own secret.
    await activateAsCoordinator(
      hostCoord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: wgKey(), adminPubKey: mesh.admin.publicKey, masterSecret: hostSecret, nodeEndpoints: [], coordinatorEndpoints: [] },
      () => {},
    );
    // The admin runs add-nodes against "their" Coordinator; the host redirects the connection to its own.
    const outcome = await activateAdditionalNodes(hostCoord.endpoint, mesh.credentials(false), { secretKey: mesh.admin.secretKey, clusterID: adminCfg.clusterID }, [node.endpoint], () => {}).catch((e: CoreError) => e);
    const joinedHostCluster = !(outcome instanceof Error) && outcome.activated.length > 0;
    expect({ joinedHostCluster, nodeState: node.peer.state }).toEqual({ joinedHostCluster: false, nodeState: PeerState.AcceptingInit });
    expect((outcome as CoreError).code).toBe("permission-denied");
    expect((outcome as CoreError).message).toMatch(/admin signature: does not verify with the admin key for this cluster/);
  });
});
