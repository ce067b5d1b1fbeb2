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
// Heavy (minutes on 2 cores): only when named, e.g. `npm run bench -- streams10k`.
if (only.includes("streams10k")) suites.push(["streams10k", () => benchStreams(10_000, "stream")]);
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
