import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import * as grpc from "@grpc/grpc-js";
import { deriveDataKey, stateDiskKey } from "../../src/core/keys.js";
import { nullLogger } from "../../src/shared/logger.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import { createVPNAPIServer, sourceVPNIP } from "../../src/vpnapi/server.js";
import { TestMesh } from "../helpers/mesh.js";

const secret = Buffer.from("vpnapi test master secret 32 by!");

describe("vpnapi", () => {
  // On loopback every call comes from 127.0.0.1: the test says which VPN IP the connection has.
  let caller: string | undefined = "10.118.0.11";
  const mesh = new TestMesh({ attestation: "test", vpnapiCaller: () => caller });
  let client: VPNAPIClient;
  let clusterID: Buffer;
  let coordPeer: TestMesh["peers"][number];
  beforeAll(async () => {
    const coord = await mesh.startPeer("coord");
    coordPeer = coord;
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] },
      () => {},
    );
    clusterID = cfg.clusterID;
    client = new VPNAPIClient(mesh.vpnapi.get("10.118.0.1")!);
  });
  beforeEach(() => {
    caller = "10.118.0.11";
  });
  afterAll(async () => {
    client?.close();
    await mesh.close();
  });

  it("GetDataKey derives HKDF(masterSecret, clusterID, key-ID) for a registered peer (the admin, 10.118.0.11)", async () => {
    caller = "10.118.0.11";
    expect((await client.getDataKey("backup", 32)).equals(deriveDataKey(secret, clusterID, "backup", 32))).toBe(true);
  });

  it("GetDataKey never yields a disk key, whatever the key ID (regression: disk keys were data keys)", async () => {
    caller = "10.118.0.11";
    const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const disk = stateDiskKey(secret, clusterID, uuid);
    for (const id of [uuid, `disk-${uuid}`]) expect((await client.getDataKey(id, 32)).equals(disk), id).toBe(false);
  });

  const denied = [
    { name: "a VPN IP without a peer record", ip: "10.118.0.99" as string | undefined },
    { name: "a caller that is not a VPN address", ip: undefined },
  ];
  for (const tc of denied) {
    it(`GetDataKey refuses ${tc.name} with PERMISSION_DENIED`, async () => {
      caller = tc.ip;
      const err = (await client.getDataKey("backup", 32).catch((e: unknown) => e)) as { code?: string; message: string };
      expect(err.code).toBe("permission-denied");
      expect(err.message).toMatch(/not a registered peer/);
    });
  }

  it("GetDataKey over a real connection from 127.0.0.1 (no VPN source address) is PERMISSION_DENIED", async () => {
    const server = createVPNAPIServer(coordPeer.peer, nullLogger);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const c = new VPNAPIClient(`127.0.0.1:${port}`);
    try {
      const err = (await c.getDataKey("backup", 32).catch((e: unknown) => e)) as { code?: string };
      expect(err.code).toBe("permission-denied");
    } finally {
      c.close();
      server.forceShutdown();
    }
  });

  const sources = [
    { peer: "10.118.0.11:43210", ip: "10.118.0.11" },
    { peer: "ipv4:10.118.3.4:1", ip: "10.118.3.4" },
    { peer: "[::ffff:10.118.0.12]:5555", ip: "10.118.0.12" },
    { peer: "127.0.0.1:43210", ip: undefined },
    { peer: "198.18.0.2:9027", ip: undefined },
    { peer: "[::1]:4000", ip: undefined },
    { peer: "10.118.0.11]:43210", ip: undefined },
    { peer: "unix:/tmp/x", ip: undefined },
  ];
  for (const tc of sources) it(`sourceVPNIP(${tc.peer}) is ${String(tc.ip)}`, () => expect(sourceVPNIP(tc.peer)).toBe(tc.ip));

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
