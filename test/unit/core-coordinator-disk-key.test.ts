/**
 * A Coordinator releases a rebooted peer's disk key also when its store lost the quorum, reading
 * this member's copy (regression: with two Coordinators on managed etcd, the rebooted one is the
 * quorum the other lacks, and it waited forever for its key).
 */
import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.js";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { Coordinator } from "../../src/core/coordinator.js";
import { UnavailableError } from "../../src/core/errors.js";
import { stateDiskKey } from "../../src/core/keys.js";
import { nullLogger } from "../../src/shared/logger.js";
import type { PeerRecord } from "../../src/core/peer.js";
import type { PeerClient } from "../../src/core/remote.js";
import type { ReadOptions, Store } from "../../src/core/store.js";
import type { StoreMembers } from "../../src/core/store-members.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import { FakeVPN } from "../helpers/fakes.js";

const self: PeerRecord = { role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 9).toString("base64"), wgPort: 51820, pubapiPort: 9000 };
const other: PeerRecord = { role: "coordinator", publicIP: "192.0.2.2", vpnIP: "10.118.0.2", vpnPubKey: Buffer.alloc(32, 8).toString("base64"), wgPort: 51820, pubapiPort: 9000 };
const disk = "0f0e0d0c-0b0a-4908-8706-050403020100";
const secrets = { masterSecret: Buffer.alloc(32, 7), clusterID: Buffer.alloc(32, 6) };

/** quorumStore answers a cluster read only while `quorum.ok`; a local read always. */
function quorumStore(inner: Store, quorum: { ok: boolean }, reads: string[]): Store {
  return {
    get: async (key: string, options?: ReadOptions) => {
      reads.push(`${options?.local ? "local" : "cluster"} ${key}`);
      if (!quorum.ok && !options?.local) throw new UnavailableError("etcd: request timed out");
      return inner.get(key);
    },
    list: (prefix) => inner.list(prefix),
    begin: () => inner.begin(),
    close: () => inner.close(),
  };
}

describe("Coordinator disk-key release", () => {
  it("with the quorum: cluster reads; without it: this member's copy, and the key still goes to the registered peer", async () => {
    const quorum = { ok: true };
    const reads: string[] = [];
    const store = new ClusterStore(quorumStore(await MemoryStore.open(), quorum, reads));
    await store.putSecrets(secrets);
    await store.putPeer(self);
    await store.putPeer(other, disk);
    const pushed: Array<{ endpoint: string; key: Buffer }> = [];
    const peerClient = { pushStateDiskKey: async (endpoint: string, _uuid: string, key: Uint8Array) => void pushed.push({ endpoint, key: Buffer.from(key) }) } as unknown as PeerClient;
    const members = {
      checkQuorum: async () => {
        if (!quorum.ok) throw new UnavailableError("etcd quorum lost: this Coordinator's etcd member has no leader");
      },
    } as unknown as StoreMembers;
    const c = new Coordinator({ self, store, vpn: new FakeVPN(self.publicIP, 51820), disk: undefined, peerClient, clock: systemClock, logger: nullLogger, updateIntervalMs: 1000, members });

    await c.requestStateDiskKey(disk);
    expect(reads.every((r) => r.startsWith("cluster"))).toBe(true);
    quorum.ok = false;
    reads.length = 0;
    await c.requestStateDiskKey(disk);
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((r) => r.startsWith("local"))).toBe(true);
    const want = Buffer.from(stateDiskKey(secrets.masterSecret, secrets.clusterID, disk));
    expect(pushed).toEqual([
      { endpoint: "192.0.2.2:9000", key: want },
      { endpoint: "192.0.2.2:9000", key: want },
    ]);
    // An unknown disk is refused from the local copy as from the cluster's.
    await expect(c.requestStateDiskKey("00000000-0000-4000-8000-000000000000")).rejects.toThrow(/not a disk of any activated peer/);
    c.close();
  });
});
