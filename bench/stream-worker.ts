/**
 * A worker process of the streaming bench: `count` simulated Nodes, each its own gRPC channel (its
 * own TCP connection) to the Coordinator, either holding a WatchUpdates stream (applying deltas to
 * an in-memory peer set and acknowledging) or polling GetUpdate every `intervalMs` (mode "poll").
 *
 * `joinAt` 0: every Node starts empty and first takes the whole peer set (UpdateLoop, as a new
 * Node does); reports "ready" once every Node applied the first version. `joinAt` V > 0: every Node
 * starts at version V, as Nodes that already hold the set (an initial full snapshot of 10,000 peers
 * to each of 10,000 Nodes is 11 GB, a cost of joining, not of following): a stream that checks each
 * delta continues its version and acknowledges it, or a poll with V; reports "ready" once every
 * Node's first call is under way (the parent then waits for the Coordinator's count of streams).
 */
import { systemClock } from "../src/core/clock.js";
import { nullLogger } from "../src/shared/logger.js";
import type { CoordinatorClient } from "../src/core/remote.js";
import { UpdateLoop } from "../src/core/update-loop.js";
import { VPNAPIClient } from "../src/vpnapi/client.js";

const [target, first, count, mode, intervalMs, joinAt] = [
  process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5], Number(process.argv[6] ?? "1000"), Number(process.argv[7] ?? "0"),
];
const applied: Array<() => number> = [];
for (let i = 0; i < count; i++) {
  const n = first + i;
  const self = `10.${118 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  const c = new VPNAPIClient(target, 60_000, { "grpc.use_local_subchannel_pool": 1 });
  if (joinAt > 0) applied.push(mode === "stream" ? follow(c, self, joinAt) : poll(c, self, joinAt));
  else {
    const loop = new UpdateLoop({
      fetch: (v) => c.getUpdate(v, self),
      ...(mode === "stream" ? { watch: (v: number) => c.watchUpdates(v, self) } : {}),
      apply: async () => {},
      intervalMs,
      repairIntervalMs: 3_600_000,
      clock: systemClock,
      logger: nullLogger,
    });
    loop.start();
    applied.push(() => loop.resourceVersion);
  }
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20)); // spread the connects
}
const ready = setInterval(() => {
  if (applied.every((v) => v() > 0)) {
    clearInterval(ready);
    process.send!({ ready: true });
  }
}, 50);
process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "exit") process.exit(0);
});

/** follow holds one stream from version v: each delta must continue the version; it is acknowledged. */
function follow(c: CoordinatorClient, self: string, v: number): () => number {
  const s = c.watchUpdates!(v, self);
  void (async () => {
    for (let d = await s.next(); d !== undefined; d = await s.next()) {
      if (!d.snapshot && d.fromVersion !== v) throw new Error(`bench: delta from ${d.fromVersion}, applied ${v}`);
      v = d.resourceVersion;
      s.ack(v);
    }
  })().catch((err: unknown) => process.stderr.write(`bench worker: stream of ${self} ended: ${String(err)}\n`));
  return () => v;
}

/** poll asks every intervalMs with version v (the acknowledgement) and takes the version of a changed set. */
function poll(c: CoordinatorClient, self: string, v: number): () => number {
  const tick = async (): Promise<void> => {
    try {
      const u = await c.getUpdate(v, self);
      if (u.peers !== undefined) v = u.resourceVersion;
    } catch (err) {
      process.stderr.write(`bench worker: poll of ${self} failed: ${String(err)}\n`);
    }
    setTimeout(() => void tick(), intervalMs * (0.5 + Math.random()));
  };
  setTimeout(() => void tick(), Math.random() * intervalMs);
  return () => v;
}
