import * as grpc from "@grpc/grpc-js";
import { systemClock } from "../../src/core/clock.js";
import { nullLogger } from "../../src/shared/logger.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { UpdateFeed } from "../../src/core/update-feed.js";
import { createVPNAPIServer } from "../../src/vpnapi/server.js";

/** FakeVPNAPI is the real vpnapi server on loopback (plaintext, as inside the VPN) over a fixed peer set. */
export interface FakeVPNAPI {
  endpoint: string;
  /** ack records `vpnIP` as having applied `version` (what a polling Node's GetUpdate does). */
  ack(vpnIP: string, version: number): void;
  close(): void;
}

/** startFakeVPNAPI serves GetPeers/GetUpdate for `peers` at `resourceVersion` (for CLI tests). */
export async function startFakeVPNAPI(peers: PeerRecord[], resourceVersion = 7): Promise<FakeVPNAPI> {
  const feed = new UpdateFeed(systemClock);
  const backend = {
    getUpdate: async () => ({ resourceVersion, peers }),
    getDataKey: async () => Buffer.alloc(0),
    lastSeen: () => new Map<string, number>(peers.map((p) => [p.vpnIP, Date.now()])),
    updates: () => feed,
  };
  const server = createVPNAPIServer(backend, nullLogger);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { endpoint: `127.0.0.1:${port}`, ack: (ip, v) => feed.ack(ip, v), close: () => server.forceShutdown() };
}
