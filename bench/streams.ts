/**
 * Streaming bench: N simulated Nodes (real gRPC clients over real TCP on loopback, spread over a
 * few worker processes, no WireGuard) on one Coordinator process, first holding WatchUpdates
 * streams, then (a fresh Coordinator, the same N) on full-set polling. For each: the Coordinator's
 * CPU while idle, its RSS per Node, and for one peer change the commit-to-acknowledgement time
 * over all Nodes (p50, p99, max) and the bytes the Coordinator wrote per Node.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { pathToFileURL } from "node:url";

interface Stats {
  cpu: NodeJS.CpuUsage;
  rss: number;
  watchers: number;
  wchar: number;
  acked: number;
  delaysMs: number[];
  version: number;
}

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

/**
 * benchStreams measures `nodes` Nodes in `mode`; pollIntervalMs applies to polling. joinCurrent:
 * the Nodes start at the current version instead of taking the whole set first (see stream-worker.ts).
 */
export async function benchStreams(nodes: number, mode: "stream" | "poll", o: { workers?: number; pollIntervalMs?: number; joinCurrent?: boolean } = {}): Promise<Record<string, number>> {
  const workers = o.workers ?? 4;
  const pollIntervalMs = o.pollIntervalMs ?? 2000;
  const coord = fork(here("./stream-coordinator.js"), [String(nodes)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const children: ChildProcess[] = [coord];
  try {
    const { port } = await reply<{ port: number }>(coord);
    const baseStats = await ask(coord, {});
    const joinAt = o.joinCurrent ? baseStats.version : 0;
    const per = Math.ceil(nodes / workers);
    const ws = Array.from({ length: workers }, (_, w) =>
      fork(here("./stream-worker.js"), [`127.0.0.1:${port}`, String(w * per), String(Math.min(per, nodes - w * per)), mode, String(pollIntervalMs), String(joinAt)], {
        stdio: ["ignore", "inherit", "inherit", "ipc"],
        execArgv: ["--max-old-space-size=4096"],
      }),
    );
    children.push(...ws);
    const t0 = Date.now();
    await Promise.all(ws.map((w) => reply(w)));
    if (mode === "stream") {
      // Every stream open on the Coordinator (joined Nodes at the current version get no first message).
      for (let s = await ask(coord, {}); s.watchers < nodes; s = await ask(coord, {})) {
        if (Date.now() - t0 > 600_000) throw new Error(`bench: only ${s.watchers} of ${nodes} streams open after 10 min`);
        await sleep(200);
      }
    }
    const connectMs = Date.now() - t0;
    // Idle: nothing changes for 3 s.
    await sleep(1000);
    const a = await ask(coord, {});
    await sleep(3000);
    const b = await ask(coord, {});
    const idleCpuPct = (cpuMs(b.cpu) - cpuMs(a.cpu)) / 3000 * 100;
    const rssPerNode = (b.rss - baseStats.rss) / nodes;
    // One change; wait until every Node acknowledged it (streams ack on the stream, polls with the next poll).
    const before = await ask(coord, {});
    coord.send({ cmd: "commit" });
    const { version } = await reply<{ version: number; atMs: number }>(coord);
    const deadline = Date.now() + 120_000;
    let s = await ask(coord, { version });
    while (s.delaysMs.length < nodes && Date.now() < deadline) {
      await sleep(100);
      s = await ask(coord, { version });
    }
    const d = s.delaysMs;
    const q = (p: number) => d[Math.min(d.length - 1, Math.ceil(p * d.length) - 1)] ?? -1;
    const prefix = `${mode}_${nodes}${o.joinCurrent ? "_joined" : ""}`;
    return {
      [`${prefix}_connect_ms`]: connectMs,
      [`${prefix}_idle_cpu_pct`]: round(idleCpuPct),
      [`${prefix}_rss_kib_per_node`]: round(rssPerNode / 1024),
      [`${prefix}_acked`]: d.length,
      [`${prefix}_ack_p50_ms`]: q(0.5),
      [`${prefix}_ack_p99_ms`]: q(0.99),
      [`${prefix}_ack_max_ms`]: d.length > 0 ? d[d.length - 1] : -1,
      [`${prefix}_bytes_per_node`]: round((s.wchar - before.wchar) / nodes),
    };
  } finally {
    for (const c of children) c.kill("SIGKILL");
  }
}

function ask(coord: ChildProcess, m: { version?: number }): Promise<Stats> {
  coord.send({ cmd: "stats", ...m });
  return reply<Stats>(coord);
}

function reply<T>(c: ChildProcess): Promise<T> {
  return new Promise((res, rej) => {
    const onExit = (code: number | null) => rej(new Error(`bench child exited (${code})`));
    c.once("exit", onExit);
    c.once("message", (m) => {
      c.off("exit", onExit);
      res(m as T);
    });
  });
}

function cpuMs(c: NodeJS.CpuUsage): number {
  return (c.user + c.system) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const nodes = Number(process.argv[2] ?? "1000");
  const modes = (process.argv[3] ?? "stream,poll").split(",") as Array<"stream" | "poll">;
  const out: Record<string, number> = {};
  for (const m of modes) Object.assign(out, await benchStreams(nodes, m));
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
