import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.js";
import { nullLogger } from "../../src/shared/logger.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { UpdateLoop } from "../../src/core/update-loop.js";
import { toVPNPeers } from "../../src/core/vpn-peers.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import { createVPNAPIServer } from "../../src/vpnapi/server.js";
import { FeedBackend } from "../helpers/feed-backend.js";
import { FakeVPN } from "../helpers/fakes.js";
import { until } from "../helpers/wait.js";

const key = (n: number) => Buffer.alloc(32, n & 255).fill((n >> 8) & 255, 0, 1).toString("base64");
const rec = (i: number, ip = `192.0.2.${i}`): PeerRecord => ({ role: "node", publicIP: ip, vpnIP: `10.118.2.${i}`, vpnPubKey: key(i), wgPort: 51820, pubapiPort: 9000 });

describe("vpnapi WatchUpdates over gRPC", () => {
  const backend = new FeedBackend({ logEntries: 5 });
  let server: grpc.Server;
  let target: string;
  const clients: VPNAPIClient[] = [];
  const client = () => {
    const c = new VPNAPIClient(target);
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    // Not a VPN source on loopback: the Nodes' claimed VPN IPs identify them.
    server = createVPNAPIServer(backend, nullLogger, { callerVPNIP: () => undefined });
    const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    target = `127.0.0.1:${port}`;
    for (let i = 1; i <= 5; i++) backend.commit((m) => m.set(rec(i).vpnIP, rec(i)));
  });
  afterAll(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  it("a streaming Node and a polling Node reach the same state; both acknowledge; GetPeers shows applied versions", async () => {
    const mk = (self: string, stream: boolean) => {
      const vpn = new FakeVPN("192.0.2.200", 51820);
      const c = client();
      const loop = new UpdateLoop({
        fetch: (v) => c.getUpdate(v, self),
        ...(stream ? { watch: (v: number) => c.watchUpdates(v, self) } : {}),
        apply: (peers) => vpn.updatePeers(toVPNPeers(peers, self)),
        intervalMs: 20,
        clock: systemClock,
        logger: nullLogger,
      });
      return { vpn, loop, self };
    };
    const streaming = mk("10.118.2.1", true);
    const polling = mk("10.118.2.2", false);
    streaming.loop.start();
    polling.loop.start();
    try {
      const changes: Array<(m: Map<string, PeerRecord>) => void> = [
        (m) => m.set(rec(6).vpnIP, rec(6)),
        (m) => m.delete(rec(3).vpnIP),
        (m) => m.set(rec(4).vpnIP, { ...rec(4), vpnPubKey: key(44) }),
        (m) => m.set(rec(5).vpnIP, rec(5, "198.51.100.5")),
      ];
      for (const change of changes) {
        const v = backend.commit(change);
        await until(`both Nodes at version ${v}`, () => streaming.loop.resourceVersion === v && polling.loop.resourceVersion === v);
        const want = (self: string) => toVPNPeers(backend.snapshot().peers, self).sort((a, b) => a.vpnIP.localeCompare(b.vpnIP));
        expect([...streaming.vpn.peers].sort((a, b) => a.vpnIP.localeCompare(b.vpnIP))).toEqual(want(streaming.self));
        expect([...polling.vpn.peers].sort((a, b) => a.vpnIP.localeCompare(b.vpnIP))).toEqual(want(polling.self));
      }
      const v = backend.version;
      // The stream acknowledges at once; the poll with its next request.
      await until("both acknowledgements", () => backend.feed.acks.applied().get(streaming.self)?.appliedVersion === v && backend.feed.acks.applied().get(polling.self)?.appliedVersion === v);
      const prop = backend.feed.acks.propagation(v);
      expect(prop?.acked).toBe(2);
      expect(prop?.delaysMs).toHaveLength(2);
      const peers = await client().getPeers();
      expect(peers.peers.find((p) => p.peer.vpnIP === streaming.self)).toMatchObject({ appliedVersion: v });
      expect(peers.peers.find((p) => p.peer.vpnIP === rec(6).vpnIP)).toMatchObject({ appliedVersion: 0, appliedMs: 0 });
    } finally {
      streaming.loop.stop();
      polling.loop.stop();
    }
  });

  it("a Node far behind the change log gets one snapshot, then deltas; one within the log gets a delta", async () => {
    const old = backend.version;
    for (let i = 10; i < 20; i++) backend.commit((m) => m.set(rec(i).vpnIP, rec(i))); // 10 > 5 log entries
    const far = client().watchUpdates(old, "10.118.2.9");
    const first = await far.next();
    expect(first).toMatchObject({ snapshot: true, resourceVersion: backend.version, fromVersion: 0 });
    expect(first!.upserted).toHaveLength(backend.peers.size);
    far.ack(first!.resourceVersion);
    const v = backend.commit((m) => m.delete(rec(10).vpnIP));
    expect(await far.next()).toEqual({ resourceVersion: v, fromVersion: v - 1, snapshot: false, upserted: [], removed: [rec(10).vpnIP] });
    const w = backend.commit((m) => m.set(rec(11).vpnIP, rec(11, "198.51.100.11")));
    expect(await far.next()).toEqual({ resourceVersion: w, fromVersion: v, snapshot: false, upserted: [rec(11, "198.51.100.11")], removed: [] });
    far.close();

    const near = client().watchUpdates(w - 2, "10.118.2.8");
    expect(await near.next()).toEqual({ resourceVersion: w, fromVersion: w - 2, snapshot: false, upserted: [rec(11, "198.51.100.11")], removed: [rec(10).vpnIP] });
    near.close();
  });

  it("refuses a first message without an identity, and malformed versions", async () => {
    const anon = client().watchUpdates(0, "");
    await expect(anon.next()).rejects.toMatchObject({ code: "invalid-argument" });
  });
});
