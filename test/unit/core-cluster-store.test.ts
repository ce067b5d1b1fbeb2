import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { checkPeerSet, type PeerRecord } from "../../src/core/peer.js";
import { MemoryStore } from "../../src/store/store-memory.js";

const wgKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const node = (vpnIP: string, vpnPubKey = wgKey()): PeerRecord => ({ role: "node", publicIP: "198.18.0.9", vpnIP, vpnPubKey, wgPort: 51820, pubapiPort: 9000 });
const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

/** settle runs every promise and returns how many were fulfilled and the rejection messages. */
async function settle(ps: Array<Promise<unknown>>): Promise<{ ok: number; errors: string[] }> {
  const rs = await Promise.allSettled(ps);
  return { ok: rs.filter((r) => r.status === "fulfilled").length, errors: rs.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error).message)] : [])) };
}

describe("ClusterStore: disk claims and the peer set's invariants", () => {
  it("of concurrent claims of one disk UUID (two Coordinators on one store) exactly one wins", async () => {
    const store = await MemoryStore.open();
    // Two ClusterStores on one store: their writes are not serialized in-process, so they race for real.
    const [a, b] = [new ClusterStore(store), new ClusterStore(store)];
    const claims = Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claimDisk(uuid, `10.118.0.${20 + i}`));
    const r = await settle(claims);
    expect(r.ok).toBe(1);
    expect(r.errors).toHaveLength(9);
    for (const e of r.errors) expect(e).toMatch(/stateDiskUUID: .* already belongs to another peer/);
  });

  it("claiming one's own disk again is a no-op; another peer's claim is PERMISSION_DENIED", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.claimDisk(uuid, "10.118.0.1");
    await cs.claimDisk(uuid, "10.118.0.1");
    await expect(cs.claimDisk(uuid, "10.118.0.11")).rejects.toMatchObject({ code: "permission-denied" });
  });

  it("putPeer refuses a WireGuard key another peer has, and the stored set stays valid", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    const first = node("10.118.0.11");
    await cs.putPeer(first);
    const v = await cs.resourceVersion();
    await expect(cs.putPeer(node("10.118.0.12", first.vpnPubKey))).rejects.toMatchObject({ code: "already-exists", message: expect.stringMatching(/vpnPubKey: .*already used by peer 10\.118\.0\.11/) });
    expect(await cs.resourceVersion()).toBe(v);
    expect(checkPeerSet((await cs.snapshot()).peers, "peers")).toHaveLength(1);
  });

  it("putPeer refuses a different record at a taken VPN IP; the same record again is fine", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    const first = node("10.118.0.11");
    await cs.putPeer(first);
    await cs.putPeer({ ...first });
    await expect(cs.putPeer(node("10.118.0.11"))).rejects.toMatchObject({ code: "already-exists", message: expect.stringMatching(/vpnIP: the VPN IP is already taken/) });
    expect((await cs.snapshot()).peers).toEqual([first]);
  });

  it("of concurrent putPeers with one WireGuard key exactly one enters the set", async () => {
    const store = await MemoryStore.open();
    const [a, b] = [new ClusterStore(store), new ClusterStore(store)];
    const key = wgKey();
    const r = await settle(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).putPeer(node(`10.118.0.${11 + i}`, key))));
    expect(r.ok).toBe(1);
    expect(checkPeerSet((await a.snapshot()).peers, "peers")).toHaveLength(1);
  });

  it("putPeer with a disk UUID claims it in the same transaction, refusing a claimed one", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.claimDisk(uuid, "10.118.0.1");
    await expect(cs.putPeer(node("10.118.0.11"), uuid)).rejects.toMatchObject({ code: "permission-denied" });
    expect((await cs.snapshot()).peers).toEqual([]);
  });

  it("a failed activation's disk is retired: never claimable again, no peer for it", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    const ip = await cs.allocateNodeIP();
    await cs.claimDisk(uuid, ip);
    await cs.releaseNodeIP(ip, uuid);
    expect(await cs.peerOfDisk(uuid)).toBeUndefined();
    await expect(cs.claimDisk(uuid, await cs.allocateNodeIP())).rejects.toThrow(/already belongs to another peer \(a failed or removed one\)/);
  });

  it("removePeer takes a Node out, frees its IP and retires its disk", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    const ip = await cs.allocateNodeIP();
    await cs.putPeer(node(ip), uuid);
    expect((await cs.peerOfDisk(uuid))?.vpnIP).toBe(ip);
    await cs.removePeer(ip);
    expect((await cs.snapshot()).peers).toEqual([]);
    expect(await cs.peerOfDisk(uuid)).toBeUndefined();
    expect(await cs.allocateNodeIP()).toBe(ip);
    await expect(cs.removePeer(ip)).rejects.toMatchObject({ code: "not-found" });
  });
});

describe("ClusterStore.initCluster: the first Coordinator's one commit", () => {
  const self = { role: "coordinator" as const, publicIP: "198.18.0.2", vpnPubKey: wgKey(), wgPort: 51820, pubapiPort: 9000 };
  const init = (masterSecret: Buffer, me = self) =>
    ({ secrets: { masterSecret, clusterID: Buffer.alloc(16, 1) }, adminPubKey: Buffer.alloc(32, 2), adminVPNPubKey: wgKey(), self: me, diskUUID: uuid });
  const secret = Buffer.alloc(32, 7);

  it("takes the first IPs and stores the cluster; this peer's own interrupted attempt is started over, anything else refused", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    expect(await cs.initCluster(init(secret))).toEqual({ vpnIP: "10.118.0.1", adminVPNIP: "10.118.0.11", replaced: false });
    // The same peer and master secret again (its activation was interrupted before the node state): started over, same IPs.
    expect(await cs.initCluster(init(secret))).toEqual({ vpnIP: "10.118.0.1", adminVPNIP: "10.118.0.11", replaced: true });
    expect((await cs.snapshot()).peers.map((p) => p.role).sort()).toEqual(["admin", "coordinator"]);
    expect((await cs.peerOfDisk(uuid))?.vpnIP).toBe("10.118.0.1");
    await expect(cs.initCluster(init(Buffer.alloc(32, 8)))).rejects.toThrow(/already holds cluster .*belongs to another cluster/);
    await expect(cs.initCluster(init(secret, { ...self, vpnPubKey: wgKey() }))).rejects.toThrow(/already holds cluster/);
    // Once a Node is in, the cluster was committed: never started over.
    await cs.putPeer(node(await cs.allocateNodeIP()));
    await expect(cs.initCluster(init(secret))).rejects.toThrow(/already holds cluster/);
  });
});
