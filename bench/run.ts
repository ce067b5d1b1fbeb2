// npm run bench: prints one JSON object of figures, each a ratio measured side by side in this run.
import { benchActivation, benchPolls } from "./activation.js";
import { benchATLS } from "./atls.js";
import { benchStreams } from "./streams.js";
import { benchWireGuard } from "./wireguard.js";

const figures: Record<string, number | string> = { date: new Date().toISOString() };
const only = process.argv.slice(2);
const suites: Array<[string, () => Promise<Record<string, number>>]> = [
  ["activation", benchActivation],
  ["polls", benchPolls],
  ["wireguard", () => benchWireGuard()],
  ["atls", () => benchATLS()],
  ["streams", async () => ({ ...(await benchStreams(1000, "stream")), ...(await benchStreams(1000, "poll")) })],
];
// Heavy (minutes on 2 cores): only when named, e.g. `npm run bench -- streams10k`. The 10,000 Nodes
// join at the current version: each taking the whole set first would be 11 GB (see stream-worker.ts).
if (only.includes("streams10k")) {
  suites.push(["streams10k", async () => ({ ...(await benchStreams(10_000, "stream", { joinCurrent: true })), ...(await benchStreams(10_000, "poll", { joinCurrent: true, pollIntervalMs: 10_000 })) })]);
}
for (const [name, fn] of suites) {
  if (only.length > 0 && !only.includes(name)) continue;
  process.stderr.write(`bench: ${name}…\n`);
  try {
    Object.assign(figures, await fn());
  } catch (err) {
    figures[`${name}_error`] = String((err as Error).message ?? err);
  }
}
process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
