import type { NodeFailure } from "../core/coordinator.js";
import type { IO } from "./command.js";

/**
 * retryLines tells the admin exactly how to retry failed peers: one still fresh is simply activated
 * again with `command`; one that may have passed its commit point (its TPM marked) is refused as a
 * fresh peer until it is reset, so the line says to reset it first.
 */
export function retryLines(failed: readonly NodeFailure[], command: (endpoints: string[]) => string): string[] {
  const fresh = failed.filter((f) => !f.marked).map((f) => f.endpoint);
  const marked = failed.filter((f) => f.marked).map((f) => f.endpoint);
  const out: string[] = [];
  if (fresh.length > 0) out.push(`Retry (still fresh): ${command(fresh)}`);
  if (marked.length > 0) {
    out.push(
      `Reset, then retry (${marked.join(",")} failed after receiving their activation and may have marked their TPM; ` +
        `give each a blank state disk and reboot it, which resets the marker): ${command(marked)}`,
    );
  }
  return out;
}

/**
 * reportFailures prints each failed peer and one summary line with the retry commands (see
 * retryLines) on stderr; it returns the exit status: 0 when nothing failed, 1 otherwise.
 */
export function reportFailures(io: IO, command: string, failed: readonly NodeFailure[], total: number, noun: string, retry: (endpoints: string[]) => string): number {
  if (failed.length === 0) return 0;
  for (const f of failed) io.err(`  failed: ${f.endpoint}: ${f.error}`);
  io.err(`meshctl ${command}: ${failed.length} of ${total} ${noun} failed: ${failed.map((f) => f.endpoint).join(",")}. ${retryLines(failed, retry).join(" ")}`);
  return 1;
}
