/**
 * The Coordinator process of the streaming bench (bench/streams.ts forks it): a FeedBackend with
 * `peers` peer records behind the real vpnapi server on 127.0.0.1 (no WireGuard). It answers the
 * parent's IPC commands: "commit" (one peer's endpoint changes; replies with the new version and the
 * commit time), "stats" (CPU, RSS, watchers, bytes written so far, propagation of a version).
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { nullLogger } from "../src/shared/logger.js";
import type { PeerRecord } from "../src/core/peer.js";
import { createVPNAPIServer } from "../src/vpnapi/server.js";
import { FeedBackend } from "../test/helpers/feed-backend.js";

const peers = Number(process.argv[2] ?? "1000");
const backend = new FeedBackend();
backend.commit((m) => {
  for (let i = 0; i < peers; i++) m.set(vpnIP(i), record(i, 0));
});
const server = createVPNAPIServer(backend, nullLogger, { callerVPNIP: () => undefined });
const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
let changes = 0;
/** ipcBytes are what this process wrote to the parent (its IPC channel), left out of the figures. */
let ipcBytes = 0;
const send = (m: object): void => {
  ipcBytes += Buffer.byteLength(JSON.stringify(m)) + 1; // Node's "json" IPC: one line per message
  process.send!(m);
};

process.on("message", (m: { cmd: string; version?: number }) => {
  if (m.cmd === "commit") {
    const at = Date.now();
    const i = changes++ % peers;
    const v = backend.commit((map) => map.set(vpnIP(i), record(i, changes)));
    send({ version: v, atMs: at });
  } else if (m.cmd === "stats") {
    const p = m.version !== undefined ? backend.feed.acks.propagation(m.version) : undefined;
    const acked = p ? p.delaysMs : [];
    send({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss, watchers: backend.feed.watchers, wchar: wchar() - ipcBytes, acked: p?.acked ?? 0, delaysMs: acked, version: backend.version });
  } else if (m.cmd === "exit") {
    server.forceShutdown();
    process.exit(0);
  }
});
send({ port });

function vpnIP(i: number): string {
  return `10.${118 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

function record(i: number, gen: number): PeerRecord {
  const key = Buffer.alloc(32);
  key.writeUInt32BE(i, 0);
  return { role: "node", publicIP: `198.18.${(gen + i) & 255}.${(i & 254) + 1}`, vpnIP: vpnIP(i), vpnPubKey: key.toString("base64"), wgPort: 51820, pubapiPort: 9000 };
}

/** wchar is the bytes this process wrote (sockets included) so far, from /proc/self/io; stats subtract the IPC. */
function wchar(): number {
  return Number(/wchar: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))?.[1] ?? 0);
}
