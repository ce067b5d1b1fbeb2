// meshctl behaves in a pipe: a reader that goes away (`meshctl verify … | head -3`) ends meshctl
// quietly instead of with an unhandled EPIPE stack trace (issue 13).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

describe("meshctl in a pipe", () => {
  it("a reader that closed early ends meshctl without an EPIPE stack trace (regression: unhandled EPIPE)", () => {
    // `true` exits before node has started, so every write meets a closed pipe.
    const out = execFileSync("bash", ["-c", "set -o pipefail; node bin/meshctl.js activate --help 2>&1 | true; echo rc=${PIPESTATUS[0]}; node bin/meshctl.js activate --help 2>/tmp/am-pipe-err.$$ | true; cat /tmp/am-pipe-err.$$; rm -f /tmp/am-pipe-err.$$"], { cwd: root, encoding: "utf8" });
    expect(out).toContain("rc=0");
    expect(out).not.toMatch(/EPIPE|Unhandled|at .*\(node:/);
  });
});
