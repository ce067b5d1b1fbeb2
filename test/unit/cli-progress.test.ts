// Long operations (activating many Nodes) draw a progress bar on a terminal and print plain lines
// in a pipe (issue 13).
import { describe, expect, it } from "vitest";
import { Progress } from "../../src/cli/progress.js";

function lines(n: number, failAt: number): string[] {
  return Array.from({ length: n }, (_, i) => (i + 1 === failAt ? `[${i + 1}/${n}] FAILED to activate Node 10.0.0.${i}:9000: refused` : `[${i + 1}/${n}] activated Node 10.0.0.${i}:9000 as 10.118.1.${i}`));
}

describe("Progress", () => {
  it("in a pipe every line is printed as it is, indented, and no bar is drawn", () => {
    const err: string[] = [];
    const p = new Progress({ out: () => {}, err: (l) => err.push(l) });
    p.line("Coordinator is 10.118.0.1");
    for (const l of lines(3, 2)) p.line(l);
    p.end();
    expect(err).toEqual(["  Coordinator is 10.118.0.1", ...lines(3, 2).map((l) => `  ${l}`)]);
  });

  it("on a terminal one bar moves in place; failures and other lines are printed above it in full", () => {
    const err: string[] = [];
    const status: string[] = [];
    const p = new Progress({ out: () => {}, err: (l) => err.push(l), status: (l) => status.push(l) });
    p.line("Coordinator is 10.118.0.1");
    for (const l of lines(4, 3)) p.line(l);
    p.end();
    expect(err).toEqual(["  Coordinator is 10.118.0.1", `  ${lines(4, 3)[2]}`, ""]);
    const bars = status.filter((s) => s !== "");
    expect(bars[0]).toBe(`  [${"#".repeat(8)}${".".repeat(22)}] 1/4`);
    expect(bars.at(-1)).toBe(`  [${"#".repeat(30)}] 4/4, 1 failed`);
    // The bar is cleared before a full line goes above it.
    expect(status.filter((s) => s === "")).toHaveLength(1);
  });
});
