// Dependencies whose internals we rely on are pinned to the minor we tested (issue 13, "Typed
// edges"): the aTLS channel credentials subclass grpc-js's and its call-stream shapes, which a minor
// release may change.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { dependencies: Record<string, string> };
const require = createRequire(import.meta.url);

describe("dependency pins", () => {
  it("@grpc/grpc-js is pinned to one minor (~x.y.z), and the installed copy is that minor", () => {
    const range = pkg.dependencies["@grpc/grpc-js"];
    expect(range).toMatch(/^~\d+\.\d+\.\d+$/);
    const installed = (require("@grpc/grpc-js/package.json") as { version: string }).version;
    const minor = (v: string) => v.replace(/^~/, "").split(".").slice(0, 2).join(".");
    expect(minor(installed)).toBe(minor(range));
  });
});
