import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nacl from "tweetnacl";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseMeshdFlags, type MeshdConfig } from "../../src/cmd/flags.js";
import { openStore } from "../../src/cmd/store.js";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { createLogger } from "../../src/shared/logger.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator } from "../../src/pubapi/admin.js";
import { TestMesh } from "../helpers/mesh.js";

const secret = Buffer.from("at-rest test master secret 32 b!");

describe("the master secret is never written in plaintext where the host can read it", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-atrest-"));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  function config(extra: string[] = []): MeshdConfig {
    const r = parseMeshdFlags(["--public-ip", "192.0.2.7", "--state-dir", dir, ...extra]);
    if (r.help) throw new Error("help");
    return r.config;
  }

  const cases = [
    { name: "unencrypted state dir (file --disk or none), no flag: every write refused, nothing on disk", flags: [], encrypted: false, writes: false, warns: false },
    { name: "unencrypted state dir with --insecure-state-dir: written, with a warning", flags: ["--insecure-state-dir"], encrypted: false, writes: true, warns: true },
    { name: "the mapped LUKS volume (--disk on a block device): written", flags: [], encrypted: true, writes: true, warns: false },
  ];
  for (const tc of cases) {
    it(tc.name, async () => {
      const lines: string[] = [];
      const store = await openStore(config(tc.flags), tc.encrypted, createLogger((l) => lines.push(l), { level: "debug", component: "t" }));
      const cs = new ClusterStore(store);
      const put = cs.putSecrets({ masterSecret: secret, clusterID: Buffer.alloc(32, 1) });
      if (tc.writes) {
        await put;
        expect(readFileSync(join(dir, "store.json"), "utf8")).toContain(secret.toString("base64"));
      } else {
        await expect(put).rejects.toMatchObject({ code: "failed-precondition", message: expect.stringMatching(/not an encrypted volume.*--insecure-state-dir/) });
        expect(existsSync(join(dir, "store.json"))).toBe(false);
      }
      expect(lines.some((l) => /"level":"warn".*insecure-state-dir/.test(l) || /WARN.*insecure-state-dir/i.test(l))).toBe(tc.warns);
      await store.close();
    });
  }

  it("over real gRPC a Coordinator on an unencrypted state dir refuses activation before marking or persisting anything", async () => {
    const mesh = new TestMesh({ attestation: "test", storeRefuseWritesReason: "the state dir is not an encrypted volume (test)" });
    try {
      const coord = await mesh.startPeer("coord");
      const adminVPNPubKey = Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
      const err = (await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey, adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] }, () => {}).catch(
        (e: unknown) => e,
      )) as { code?: string; message: string };
      expect(err.code).toBe("failed-precondition");
      expect(err.message).toMatch(/store: refusing to write: the state dir is not an encrypted volume/);
      expect(coord.marker.marks).toBe(0);
      expect(existsSync(join(coord.stateDir, "store.json"))).toBe(false);
      expect(existsSync(join(coord.stateDir, "node-state.json"))).toBe(false);
      expect(coord.peer.state).toBe(PeerState.Failed);
    } finally {
      await mesh.close();
    }
  });
});
