// Crash-only adding of Coordinators (issue 14): the activating Coordinator stores a further
// Coordinator's record before that one commits, marked pending by itself (its VPN IP and this run
// of its process); a restarted Coordinator rolls back what earlier runs left pending, and anyone
// rolls back what a Coordinator that is gone left, so a crash never leaves a ghost Coordinator.
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { rollBackInterrupted, type CoordinatorJoinDeps } from "../../src/core/coordinator-join.js";
import type { PeerRecord } from "../../src/core/peer.js";
import type { StoreMembers } from "../../src/core/store-members.js";
import { createLogger } from "../../src/shared/logger.js";
import { MemoryStore } from "../../src/store/store-memory.js";

const wgKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
const coordinator = (vpnIP: string): PeerRecord => ({ role: "coordinator", publicIP: `198.18.0.${vpnIP.split(".")[3]}`, vpnIP, vpnPubKey: wgKey(), wgPort: 51820, pubapiPort: 9000 });
const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

describe("further Coordinators stored before they commit", () => {
  it("are pending, with who stored them, until cleared; removing the peer clears it too", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.putPeer(coordinator("10.118.0.2"), undefined, { pending: { by: "10.118.0.1", run: "a" } });
    await cs.putPeer(coordinator("10.118.0.3"), undefined, { pending: { by: "10.118.0.1", run: "a" } });
    await cs.putPeer(coordinator("10.118.0.4"), undefined, { pending: { by: "10.118.0.5", run: "b" } });
    await cs.clearPending("10.118.0.2");
    await cs.removePeer("10.118.0.3", { coordinator: true });
    expect(await cs.pending()).toEqual([{ vpnIP: "10.118.0.4", by: "10.118.0.5", run: "b" }]);
  });

  it("a restarted Coordinator rolls back what its earlier run left (member, record, disk retired), keeps a promoted one, and leaves its own run's and a live Coordinator's alone", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.putPeer(coordinator("10.118.0.1"));
    await cs.putPeer(coordinator("10.118.0.5"));
    await cs.putPeer(coordinator("10.118.0.2"), uuid, { pending: { by: "10.118.0.1", run: "before-crash" } }); // its crash interrupted this one
    await cs.putPeer(coordinator("10.118.0.3"), undefined, { pending: { by: "10.118.0.1", run: "before-crash" } }); // promoted, mark not cleared yet
    await cs.putPeer(coordinator("10.118.0.4"), undefined, { pending: { by: "10.118.0.1", run: "now" } }); // this run's, in progress
    await cs.putPeer(coordinator("10.118.0.6"), undefined, { pending: { by: "10.118.0.5", run: "x" } }); // a live Coordinator's, in progress
    const removed: string[] = [];
    const members = { removeMember: async (ip: string) => void removed.push(ip), isVoter: async (ip: string) => ip === "10.118.0.3" } as unknown as StoreMembers;
    const lines: string[] = [];
    let synced = 0;
    const deps: CoordinatorJoinDeps = { self: "10.118.0.1", run: "now", store: cs, members, peerClient: undefined as never, logger: createLogger((l) => lines.push(l)), syncVPN: async () => void synced++ };
    expect(await rollBackInterrupted(deps)).toEqual(["10.118.0.2"]);
    expect(removed).toEqual(["10.118.0.2"]);
    expect((await cs.snapshot()).peers.map((p) => p.vpnIP).sort()).toEqual(["10.118.0.1", "10.118.0.3", "10.118.0.4", "10.118.0.5", "10.118.0.6"]);
    expect(await cs.peerOfDisk(uuid)).toBeUndefined(); // its disk key is never released again
    await expect(cs.claimDisk(uuid, "10.118.0.20")).rejects.toThrow(/a failed or removed one/);
    expect((await cs.pending()).map((p) => p.vpnIP).sort()).toEqual(["10.118.0.4", "10.118.0.6"]);
    expect(synced).toBe(1);
    expect(lines.join("\n")).toMatch(/rolling back the activation of a further Coordinator/);
    expect(lines.join("\n")).toMatch(/had been promoted already: kept/);
    // Nothing left for it: a second run does nothing.
    expect(await rollBackInterrupted(deps)).toEqual([]);
  });

  it("what a Coordinator that left the peer set had pending is rolled back by any other", async () => {
    const cs = new ClusterStore(await MemoryStore.open());
    await cs.putPeer(coordinator("10.118.0.1"));
    await cs.putPeer(coordinator("10.118.0.7"), undefined, { pending: { by: "10.118.0.9", run: "gone" } }); // 10.118.0.9 was removed
    const members = { removeMember: async () => {}, isVoter: async () => false } as unknown as StoreMembers;
    const deps: CoordinatorJoinDeps = { self: "10.118.0.1", run: "now", store: cs, members, peerClient: undefined as never, logger: createLogger(() => {}), syncVPN: async () => {} };
    expect(await rollBackInterrupted(deps)).toEqual(["10.118.0.7"]);
    expect(await cs.pending()).toEqual([]);
  });
});
