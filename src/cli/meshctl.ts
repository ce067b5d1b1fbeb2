import { activate } from "./activate.js";
import { addCoordinators } from "./add-coordinators.js";
import { addNodes } from "./add-nodes.js";
import { adminConfig } from "./admin-config.js";
import { runCommand, type Command, type IO } from "./command.js";
import { evidence } from "./evidence.js";
import { measurements } from "./measurements.js";
import { peers } from "./peers.js";
import { removeCoordinator, removeNode } from "./remove-node.js";
import { recover } from "./recover.js";
import { status } from "./status.js";
import { verify } from "./verify.js";

/** commands are meshctl's subcommands, one file each. */
export const commands: Command[] = [activate, addNodes, addCoordinators, removeNode, removeCoordinator, recover, verify, measurements, status, peers, adminConfig, evidence];

const usage = `Usage: meshctl COMMAND [flags]

meshctl is the admin's client for attested-mesh: a WireGuard mesh whose peers prove what they run
(TPM quote or AMD SEV-SNP report) before they get any secret.

Commands:
${commands.map((c) => `  ${c.name.padEnd(17)} ${c.summary}`).join("\n")}

Run 'meshctl COMMAND --help' for a command's flags.`;

/** main runs meshctl with argv (without node and script) and returns the exit status. */
export async function main(argv: string[], io: IO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(usage);
    return name === undefined ? 2 : 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`meshctl: unknown command ${JSON.stringify(name)} (see meshctl --help)`);
    return 2;
  }
  return runCommand(cmd, rest, io, "meshctl");
}

/** run is the meshctl process entry (bin/meshctl.js): it runs main with the process's argv and streams. */
export function run(): void {
  // A reader that went away (`meshctl verify … | head -3`) is not an error of ours: stop quietly, as
  // Unix filters do, instead of dying on an unhandled EPIPE.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  const io: IO = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };
  // On a terminal long operations draw a progress bar in place; in a pipe they print plain lines.
  if (process.stderr.isTTY) io.status = (l) => process.stderr.write(`\r\x1b[2K${l}`);
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`meshctl: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
