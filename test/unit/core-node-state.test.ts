import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MirroredNodeState, NodeStateFile, type NodeState } from "../../src/core/node-state.js";

const state: NodeState = {
  role: "node",
  vpnIP: "10.118.0.12",
  ownerID: "ab".repeat(32),
  clusterID: "cd".repeat(32),
  coordinatorVPNIPs: ["10.118.0.1"],
  coordinatorEndpoints: ["192.0.2.1:9000"],
  coordinatorPeers: [{ role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 1).toString("base64"), wgPort: 51820, pubapiPort: 9000 }],
};

describe("node state", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-nodestate-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("a file round-trips with mode 0600", async () => {
    const f = new NodeStateFile(join(dir, "a.json"));
    await f.save(state);
    expect(await f.load()).toEqual(state);
    expect((await stat(join(dir, "a.json"))).mode & 0o777).toBe(0o600);
  });

  it("a mirrored store accepts an untouched public copy and refuses a rewritten one (regression: unauthenticated LUKS2 token)", async () => {
    const bootstrap = new NodeStateFile(join(dir, "public.json"));
    const m = new MirroredNodeState(bootstrap, new NodeStateFile(join(dir, "inner.json")));
    await m.save(state);
    const loaded = (await m.load())!;
    expect(await m.verified(loaded)).toEqual(state);
    const forged: NodeState = { ...state, coordinatorPeers: [{ ...state.coordinatorPeers[0]!, vpnPubKey: Buffer.alloc(32, 9).toString("base64") }] };
    await bootstrap.save(forged);
    await expect(m.verified((await m.load())!)).rejects.toThrow(/differs from the one inside the state disk/);
  });
});
