// The systemd unit and the installer (issue 13, "Service"): the unit passes systemd-analyze verify
// and keeps its hardening; install.sh installs a meshd that runs from the prefix.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const unit = join(root, "deploy/meshd.service");

describe("deploy/meshd.service", () => {
  it("passes systemd-analyze verify", () => {
    const out = execFileSync("systemd-analyze", ["verify", unit], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    expect(out).toBe("");
  });

  const text = readFileSync(unit, "utf8");
  const cases: Array<[string, RegExp]> = [
    ["no new privileges", /^NoNewPrivileges=yes$/m],
    ["a read-only system but the state dir", /^ProtectSystem=strict$/m],
    ["the state dir writable", /^ReadWritePaths=.*\/var\/lib\/meshd/m],
    ["only the capabilities it needs", /^CapabilityBoundingSet=CAP_NET_ADMIN CAP_SYS_ADMIN CAP_IPC_LOCK$/m],
    ["restart on failure", /^Restart=on-failure$/m],
    ["a closed device policy", /^DevicePolicy=closed$/m],
    ["the TPM", /^DeviceAllow=\/dev\/tpmrm0 rw$/m],
  ];
  for (const [name, pattern] of cases) it(`keeps ${name}`, () => expect(text).toMatch(pattern));
});

describe("deploy/install.sh", () => {
  const dir = mkdtempSync(join(tmpdir(), "am-install-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("installs the built project and a unit pointing at it; the installed meshd runs", () => {
    const prefix = join(dir, "opt");
    execFileSync("bash", [join(root, "deploy/install.sh"), "--prefix", prefix, "--unit-dir", join(dir, "units"), "--no-enable"], { stdio: "pipe" });
    expect(readFileSync(join(dir, "units/meshd.service"), "utf8")).toContain(`ExecStart=/usr/bin/node ${prefix}/bin/meshd.js`);
    expect(execFileSync("node", [join(prefix, "bin/meshd.js"), "--help"], { encoding: "utf8" })).toMatch(/--state-dir/);
  }, 60_000);
});
