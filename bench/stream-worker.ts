/**
 * A worker process of the streaming bench: `count` simulated Nodes, each its own gRPC channel (its
 * own TCP connection) to the Coordinator, either holding a WatchUpdates stream (applying deltas to
 * an in-memory peer set and acknowledging) or polling GetUpdate every `intervalMs` (mode "poll").
 * Reports "ready" once every Node applied the first version.
 */
import { systemClock } from "../src/core/clock.js";
import { nullLogger } from "../src/core/logger.js";
import { UpdateLoop } from "../src/core/update-loop.js";
import { VPNAPIClient } from "../src/vpnapi/client.js";

const [target, first, count, mode, intervalMs] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4]), process.argv[5]!, Number(process.argv[6] ?? "1000")];
const loops: UpdateLoop[] = [];
for (let i = 0; i < count; i++) {
  const n = first + i;
  const self = `10.${118 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  const c = new VPNAPIClient(target, 60_000, { "grpc.use_local_subchannel_pool": 1 });
  const loop = new UpdateLoop({
    fetch: (v) => c.getUpdate(v, self),
    ...(mode === "stream" ? { watch: (v: number) => c.watchUpdates(v, self) } : {}),
    apply: async () => {},
    intervalMs,
    repairIntervalMs: 3_600_000,
    clock: systemClock,
    logger: nullLogger,
  });
  loops.push(loop);
  loop.start();
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20)); // spread the connects
}
const ready = setInterval(() => {
  if (loops.every((l) => l.resourceVersion > 0)) {
    clearInterval(ready);
    process.send!({ ready: true });
  }
}, 50);
process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "exit") process.exit(0);
});
