/**
 * Review finding: a FRESH peer whose --disk block device is a LUKS2 volume it cannot open (the host
 * handed it a disk it formatted itself) starts as "locked", yet meshd treats the state dir as the
 * encrypted volume (openStateDisk returns encrypted: true) although nothing is mounted there: the
 * state dir is the plain directory under the mount point, on host-readable storage. The peer still
 * accepts ActivateAsCoordinator, and the master secret lands in plaintext in <state-dir>/store.json
 * (and wg.key, the Coordinator's WireGuard private key, would be made there too).
 *
 * Expected: meshd refuses to start (or to become a Coordinator) on a locked state disk without an
 * authenticated node state; the master secret is never written.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import nacl from "tweetnacl";
import { afterAll, describe, expect, it } from "vitest";
import { createATLSChannelCredentials } from "../../src/atls/client.js";
import { validatorsFor } from "../../src/attestation/validators.js";
import { parseMeshdFlags } from "../../src/cmd/flags.js";
import { startMeshd } from "../../src/cmd/meshd.js";
import { createLogger } from "../../src/shared/logger.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { createLUKSFile, haveCryptsetup, requireOrSkip } from "../helpers/luks.js";
import { freePort } from "../helpers/ports.js";
import { startSwtpm, swtpmPolicy } from "../helpers/swtpm.js";

const canRun = (process.getuid?.() === 0 || requireOrSkip("root")) && haveCryptsetup() && (existsSync("/usr/sbin/losetup") || requireOrSkip("losetup")) && (existsSync("/usr/bin/swtpm") || requireOrSkip("swtpm"));


const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

describe.skipIf(!canRun)("review: fresh peer on a locked (host-made) LUKS2 state disk", () => {
  it("never writes the master secret into the unmounted state dir", async () => {
    // The host formats the disk itself: it knows the key; the peer's initial key file does not open it.
    const luks = await createLUKSFile();
    cleanups.push(() => luks.cleanup());
    const loop = (await execa("losetup", ["--find", "--show", luks.path])).stdout.trim();
    cleanups.push(() => execa("losetup", ["-d", loop]));
    const tpm = await startSwtpm();
    cleanups.push(() => tpm.stop());
    const dir = await mkdtemp(join(tmpdir(), "am-review-locked-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const stateDir = join(dir, "state");
    // No WireGuard tools: the VPN cannot open (and nothing is created outside this test); whatever
    // activation wrote before it needed the VPN stays written.
    const bin = join(dir, "bin");
    await execa("mkdir", ["-p", bin]);
    for (const tool of ["ip", "wg", "wireguard-go"]) {
      await writeFile(join(bin, tool), "#!/bin/sh\necho 'disabled by the review test' >&2\nexit 1\n");
      await chmod(join(bin, tool), 0o755);
    }
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}:${oldPath}`;
    cleanups.push(async () => {
      process.env.PATH = oldPath;
    });

    const port = await freePort();
    const parsed = parseMeshdFlags([
      "--listen", `127.0.0.1:${port}`,
      "--attestation", "tpm",
      "--tpm", `swtpm:127.0.0.1:${tpm.port}`,
      "--vpn", "userspace",
      "--wg-interface", `amrv${randomBytes(3).toString("hex")}`,
      "--state-dir", stateDir,
      "--disk", loop,
      "--disk-initial-key", join(dir, "run", "state.key"),
    ]);
    if (parsed.help) throw new Error("help");
    const lines: string[] = [];
    let shutdown: (() => Promise<void>) | undefined;
    try {
      shutdown = await startMeshd(parsed.config, createLogger((l) => lines.push(l), { level: "debug", component: "meshd" }));
    } catch (err) {
      // Refusing to start is the correct answer, naming why.
      expect((err as Error).message).toMatch(/locked, and this peer has no node state/);
      expect(existsSync(join(stateDir, "store.json"))).toBe(false);
      return;
    }
    cleanups.push(() => shutdown());

    const masterSecret = randomBytes(32);
    const creds = createATLSChannelCredentials(validatorsFor(swtpmPolicy()), { requireFresh: true });
    await activateAsCoordinator(
      `127.0.0.1:${port}`,
      creds,
      {
        adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"),
        adminPubKey: nacl.sign.keyPair().publicKey,
        masterSecret,
        nodeEndpoints: [],
        coordinatorEndpoints: [],
      },
      () => {},
      20_000,
    ).catch(() => undefined);

    const storeFile = join(stateDir, "store.json");
    const plaintext = existsSync(storeFile) ? readFileSync(storeFile, "utf8") : "";
    // The state dir is not the (locked, unmounted) LUKS volume: the host reads this file.
    expect(plaintext.includes(masterSecret.toString("base64")) || plaintext.includes(masterSecret.toString("hex"))).toBe(false);
  }, 60_000);
});
