// Crash-only adding of Coordinators (issue 14): the first Coordinator stores a further Coordinator's
// record before that one commits, marked pending by itself; a restarted Coordinator rolls back what
// it left pending (store member, record, disk), so a crash never leaves a ghost Coordinator.
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { rollBackInterrupted } from "../../src/core/coordinator-join.js";
import type { PeerRecord } from "../../src/core/peer.js";
import type { StoreMembers } from "../../src/core/store-members.js";
import { createLogger } from "../../src/shared/logger.js";
import { MemoryStore } from "../../src/store/store-memory.js";

const wgKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const coordinator = (vpnIP: string): PeerRecord => ({ role: "coordinator", publicIP: `198.18.0.${vpnIP.split(".")[3]}`, vpnIP, vpnPubKey: wgKey(), wgPort: 51820, pubapiPort: 9000 });
const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

describe("further Coordinators stored before they commit", () => {
  it("are pending by the Coordinator that stores them until cleared; removing the peer clears it too", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.putPeer(coordinator("10.118.0.2"), undefined, { pendingBy: "10.118.0.1" });
    await cs.putPeer(coordinator("10.118.0.3"), undefined, { pendingBy: "10.118.0.1" });
    await cs.putPeer(coordinator("10.118.0.4"), undefined, { pendingBy: "10.118.0.5" });
    expect((await cs.pendingBy("10.118.0.1")).sort()).toEqual(["10.118.0.2", "10.118.0.3"]);
    await cs.clearPending("10.118.0.2");
    await cs.removePeer("10.118.0.3", { coordinator: true });
    expect(await cs.pendingBy("10.118.0.1")).toEqual([]);
    expect(await cs.pendingBy("10.118.0.5")).toEqual(["10.118.0.4"]);
  });

  it("a restarted Coordinator rolls back its own pending ones (member, record, disk retired) and leaves the others' and committed ones alone", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.putPeer(coordinator("10.118.0.1"));
    await cs.putPeer(coordinator("10.118.0.2"), uuid, { pendingBy: "10.118.0.1" }); // interrupted by 10.118.0.1's crash
    await cs.putPeer(coordinator("10.118.0.3"), undefined, { pendingBy: "10.118.0.1" });
    await cs.clearPending("10.118.0.3"); // committed and promoted
    await cs.putPeer(coordinator("10.118.0.4"), undefined, { pendingBy: "10.118.0.5" }); // another Coordinator's, still running
    const removed: string[] = [];
    const members = { removeMember: async (ip: string) => void removed.push(ip) } as unknown as StoreMembers;
    const lines: string[] = [];
    let synced = 0;
    const ips = await rollBackInterrupted({ self: "10.118.0.1", store: cs, members, peerClient: undefined as never, logger: createLogger((l) => lines.push(l)), syncVPN: async () => void synced++ });
    expect(ips).toEqual(["10.118.0.2"]);
    expect(removed).toEqual(["10.118.0.2"]);
    expect((await cs.snapshot()).peers.map((p) => p.vpnIP).sort()).toEqual(["10.118.0.1", "10.118.0.3", "10.118.0.4"]);
    expect(await cs.peerOfDisk(uuid)).toBeUndefined(); // its disk key is never released again
    await expect(cs.claimDisk(uuid, "10.118.0.20")).rejects.toThrow(/a failed or removed one/);
    expect(synced).toBe(1);
    expect(lines.join("\n")).toMatch(/rolling back the activation of a further Coordinator/);
    // Nothing left: a second run does nothing.
    expect(await rollBackInterrupted({ self: "10.118.0.1", store: cs, members, peerClient: undefined as never, logger: createLogger(() => {}), syncVPN: async () => {} })).toEqual([]);
  });
});
