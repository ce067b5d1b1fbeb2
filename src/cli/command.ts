import { parseArgs, type ParseArgsConfig } from "node:util";
import { errorMessage } from "../core/errors.js";

/** IO is where a command writes; tests pass buffers, meshctl passes the process streams. */
export interface IO {
  out(line: string): void;
  err(line: string): void;
  /** status, on a terminal only, replaces the current status line of stderr (progress bars); "" clears it. */
  status?: (line: string) => void;
}

/** UsageError means the command line was wrong: exit status 2 and a pointer to --help. */
export class UsageError extends Error {}

/** Command is one meshctl subcommand: its flags, its help and its action. */
export interface Command {
  name: string;
  summary: string;
  /** usage is the full --help text. */
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** run does the work; it returns the exit status (0 success). */
  run(values: Record<string, string | boolean | undefined>, positionals: string[], io: IO): Promise<number>;
}

/** runCommand parses argv for cmd and runs it, turning errors into one stderr line and an exit status. */
export async function runCommand(cmd: Command, argv: string[], io: IO, prog: string): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: { ...cmd.options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.err(`${prog} ${cmd.name}: ${(err as Error).message} (see ${prog} ${cmd.name} --help)`);
    return 2;
  }
  if (parsed.values.help) {
    io.out(cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${prog} ${cmd.name}: ${err.message} (see ${prog} ${cmd.name} --help)`);
      return 2;
    }
    io.err(`${prog} ${cmd.name}: ${errorMessage(err)}`);
    return 1;
  }
}

/** required returns a string flag's value or throws UsageError naming it. */
export function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** list splits a comma-separated flag value, dropping empty items. */
export function list(v: string | boolean | undefined): string[] {
  return typeof v === "string" ? v.split(",").map((s) => s.trim()).filter((s) => s !== "") : [];
}
