// Typed edges (issue 13): handlers and clients are typed by the types generated from proto/, so a
// proto change that the code does not follow fails the build. Shown on a copy of the sources: one
// field of pubapi.proto renamed, the types generated again, and tsc must name the stale uses.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const repo = new URL("../..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "am-proto-types-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("types generated from the protos", () => {
  it("renaming a pubapi.proto field (node_vpn_ip → node_ip) makes tsc fail where the code uses the old name", () => {
    for (const d of ["src", "proto", "scripts"]) cpSync(join(repo, d), join(dir, d), { recursive: true, filter: (f) => !f.includes(`${join("src", "gen")}`) });
    for (const f of ["tsconfig.json", "package.json"]) cpSync(join(repo, f), join(dir, f));
    symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
    const proto = join(dir, "proto", "pubapi.proto");
    const text = readFileSync(proto, "utf8");
    expect(text).toContain("string node_vpn_ip = 1;");
    writeFileSync(proto, text.replace("string node_vpn_ip = 1;", "string node_ip = 1;"));
    execFileSync(process.execPath, [join(dir, "scripts", "gen-proto-types.mjs")], { stdio: "pipe" });
    const tsc = spawnSync(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", join(dir, "tsconfig.json"), "--noEmit"], { encoding: "utf8" });
    expect(tsc.status).not.toBe(0);
    // The initial request is built and read in pubapi/initial-request.ts: both ends are named.
    expect(tsc.stdout).toMatch(/src\/pubapi\/initial-request\.ts\(\d+,\d+\): error TS\d+: .*nodeVpnIp/);
  }, 120_000);
});
