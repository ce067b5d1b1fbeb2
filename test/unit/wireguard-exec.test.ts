import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { execaRunner } from "../../src/wireguard/exec.js";

describe("execaRunner", () => {
  const saved = { HOME: process.env.HOME, SHLVL: process.env.SHLVL };
  let home = "";
  afterEach(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (home) await rm(home, { recursive: true, force: true });
  });

  it("hands a secret on stdin through /proc/self/fd/0 without a shell that sources ~/.bashrc (regression: pyenv in root's .bashrc stalled meshd)", async () => {
    home = await mkdtemp(join(tmpdir(), "am-home-"));
    const marker = join(home, "bashrc-ran");
    // bash with a socket as stdin (Node's pipes are socketpairs) sources ~/.bashrc like under rshd.
    await writeFile(join(home, ".bashrc"), `touch ${marker}\n`);
    process.env.HOME = home;
    process.env.SHLVL = "0"; // as under npm and vitest workers: bash skips the rshd rule from level 2 on
    const r = await execaRunner("cat", ["/proc/self/fd/0"], { input: "secret-on-stdin" });
    expect(r.stdout).toBe("secret-on-stdin");
    expect(existsSync(marker)).toBe(false);
  });
});
