import { afterAll, beforeAll, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { deriveDataKey } from "../../src/core/keys.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import { TestMesh } from "../helpers/mesh.js";

const secret = Buffer.from("vpnapi test master secret 32 by!");

describe("vpnapi", () => {
  const mesh = new TestMesh({ attestation: "test" });
  let client: VPNAPIClient;
  let clusterID: Buffer;
  beforeAll(async () => {
    const coord = await mesh.startPeer("coord");
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] },
      () => {},
    );
    clusterID = cfg.clusterID;
    client = new VPNAPIClient(mesh.vpnapi.get("10.118.0.1")!);
  });
  afterAll(async () => {
    client?.close();
    await mesh.close();
  });

  it("GetDataKey derives HKDF(masterSecret, clusterID, key-ID)", async () => {
    expect((await client.getDataKey("backup", 32)).equals(deriveDataKey(secret, clusterID, "backup", 32))).toBe(true);
  });

  it("GetUpdate answers 'unchanged' for the current version and the full set otherwise", async () => {
    const full = await client.getUpdate(0, "10.118.0.11");
    expect(full.peers!.map((p) => p.role).sort()).toEqual(["admin", "coordinator"]);
    const same = await client.getUpdate(full.resourceVersion, "10.118.0.11");
    expect(same).toEqual({ resourceVersion: full.resourceVersion, peers: undefined });
  });

  const bad = [
    { name: "a data key too long", call: () => client.getDataKey("k", 65), msg: /INVALID_ARGUMENT|length: must be 16 to 64 bytes, got 65/ },
    { name: "a data key ID with a slash", call: () => client.getDataKey("a/b", 32), msg: /dataKeyID/ },
    { name: "a caller VPN IP that is not an IP", call: () => client.getUpdate(0, "not-an-ip"), msg: /nodeVPNIP: not an IP address/ },
  ];
  for (const tc of bad) {
    it(`refuses ${tc.name} with INVALID_ARGUMENT naming the field`, async () => {
      const err = await tc.call().catch((e: { code?: string; message: string }) => e);
      expect((err as { code?: string }).code).toBe("invalid-argument");
      expect((err as Error).message).toMatch(tc.msg);
    });
  }
});
