import { parseArgs } from "node:util";
import { LocalMesh, type PeerRow } from "./local-mesh.js";
import { debianPackageOf, localMeshTools, missingRequirements } from "./requirements.js";

/** localmeshUsage is `localmesh --help`. */
export const localmeshUsage = `Usage: localmesh [--nodes N] [--keep]

Runs a whole attested-mesh on this machine: one network namespace per peer plus one for the admin,
joined by veth pairs to a bridge in a namespace of its own (addresses in 198.18.0.0/24, the
benchmarking range, which never leave those namespaces). Every peer runs its own swtpm and meshd
(userspace WireGuard, wireguard-go). The admin writes a measurement policy with the PCRs 0-10 of a
fresh swtpm, activates 1 Coordinator + N Nodes with 'meshctl activate', brings its tunnel up with
wg-quick, and pings every peer through the VPN. Prints one row per peer, then tears everything down.

Options:
  --nodes N   Nodes besides the Coordinator (default 3, 1 to 50)
  --keep      keep the mesh running until Ctrl-C (enter a peer with: ip netns exec NAMESPACE bash)
  -h, --help  this help

Needs root, Linux with /dev/net/tun, and the Debian packages
  ${[...new Set(localMeshTools.map((t) => debianPackageOf[t]))].join(" ")}
(bash scripts/setup.sh installs them and builds). Progress goes to stderr, the table to stdout.
Exit status: 0 when every peer answered through the VPN, 1 on failure, 2 on a usage error.`;

/** formatTable renders status rows as an aligned table (role, public IP, VPN IP, RTT, namespace). */
export function formatTable(rows: readonly PeerRow[]): string {
  const cells = [
    ["ROLE", "PUBLIC IP", "VPN IP", "PING (VPN)", "NAMESPACE"],
    ...rows.map((r) => [r.role, r.publicIP, r.vpnIP ?? "-", r.rttMs === undefined ? "-" : `${r.rttMs.toFixed(3)} ms`, r.netns]),
  ];
  const widths = cells[0].map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] + 2))).join("")).join("\n");
}

function parse(argv: string[]): { help: true } | { help: false; nodes: number; keep: boolean } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { nodes: { type: "string", default: "3" }, keep: { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) return { help: true };
  if (positionals.length > 0) throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const nodes = Number(values.nodes);
  if (!/^\d+$/.test(values.nodes) || nodes < 1 || nodes > 50) throw new Error("--nodes: a number from 1 to 50");
  return { help: false, nodes, keep: values.keep };
}

const err = (line: string): void => {
  process.stderr.write(`localmesh: ${line}\n`);
};

/** main runs localmesh with argv (without node and script) and resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parse(argv);
  } catch (e) {
    err(`${(e as Error).message} (see localmesh --help)`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${localmeshUsage}\n`);
    return 0;
  }
  const missing = missingRequirements(localMeshTools);
  if (missing.length > 0) {
    err(`cannot run here: ${missing.join("; ")}`);
    err(`it needs root and the Debian packages ${[...new Set(localMeshTools.map((t) => debianPackageOf[t]))].join(" ")} (bash scripts/setup.sh installs them)`);
    return 1;
  }
  let mesh: LocalMesh | undefined;
  let stopping: ((signal: NodeJS.Signals) => void) | undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => (stopping = resolve));
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalled = signal;
    stopping!(signal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const started = Date.now();
    mesh = await LocalMesh.create({ progress: err, updateIntervalSec: 2 });
    const rows = await Promise.race([mesh.up(args.nodes), stopped.then((s) => Promise.reject(new Error(`interrupted by ${s}`)))]);
    process.stdout.write(`${formatTable(rows)}\n`);
    err(`mesh of 1 Coordinator + ${args.nodes} Nodes up and verified in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (args.keep) {
      err(`kept running: the admin is ${mesh.admin.netns} (try: ip netns exec ${mesh.admin.netns} ping ${rows[0]?.vpnIP ?? "10.118.0.1"}); files and logs in ${mesh.workDir}`);
      err("press Ctrl-C to tear it down");
      await stopped;
    }
    return 0;
  } catch (e) {
    err(`failed: ${e instanceof Error ? e.message : String(e)}`);
    const diag = mesh?.diagnostics(8);
    if (diag && !signalled) process.stderr.write(`${diag}\n`);
    return signalled ? 130 : 1;
  } finally {
    await mesh?.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** run is the process entry (bin/localmesh.js). */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`localmesh: ${String(e)}\n`);
      process.exit(1);
    },
  );
}
