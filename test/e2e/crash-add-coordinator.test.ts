/**
 * Crash-only meshd (issue 14), adding a further Coordinator (`meshctl add-coordinators`, managed
 * etcd): for every crash point on either side (src/shared/crash.ts: "add-coordinator:*" on the
 * Coordinator that activates, "additional-coordinator:*" on the new one) that meshd SIGKILLs itself
 * there (its etcd member and wireguard-go left running, as a killed meshd leaves them), is started
 * again with the same flags, and the mesh is checked: no VPN IP or WireGuard key twice in the peer
 * set, the new peer is either a working Coordinator in the set (its device lists every member, its
 * disk opens with its derived key) or not in the set at all (no ghost: a restarted Coordinator rolls
 * back what it left pending), every device converges, and the admin can still add a Node, which
 * needs the store's quorum (a ghost voting member would take it away). A Coordinator that ended in
 * the set is then removed again (meshctl remove-coordinator) to keep the store small.
 * Runs dist/: build first.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAdminFile } from "../../src/cli/admin-file.js";
import { stateDiskKey } from "../../src/core/keys.js";
import type { LocalMesh } from "../../src/localmesh/local-mesh.js";
import type { LocalPeer } from "../../src/localmesh/local-peer.js";
import { localMeshTools } from "../../src/localmesh/requirements.js";
import type { CrashPoint } from "../../src/shared/crash.js";
import { waitFor } from "../../src/shared/wait.js";
import { type Tally, activatedMesh, diagnoseOnFailure, diskUUID, exitOf, opensWith, wgPublicKey } from "../helpers/crash-driver.js";
import { canRunE2E } from "../helpers/netns.js";

const reason = canRunE2E(localMeshTools) ?? (existsSync("/usr/bin/etcd") ? undefined : "no /usr/bin/etcd (Debian etcd-server)");
const convergeMs = 30_000;

/** On the Coordinator that activates: it is restarted with the point, then add-coordinators runs. */
const activatingPoints: CrashPoint[] = ["add-coordinator:after-peer-stored", "add-coordinator:after-member-added", "add-coordinator:before-promote", "add-coordinator:after-promote"];
/** On the new Coordinator: the fresh peer runs with the point. */
const newPoints: CrashPoint[] = ["additional-coordinator:after-node-state", "additional-coordinator:after-disk-key", "additional-coordinator:after-member-joined", "additional-coordinator:after-role"];

describe.skipIf(reason !== undefined)(`adding a Coordinator, meshd SIGKILLed at each crash point and restarted${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let mesh: LocalMesh;
  let c1: LocalPeer;
  const nodes: LocalPeer[] = [];
  const progress: string[] = [];
  const tally: Tally = { exercised: 0, checks: 0 };
  let n = 0;

  beforeAll(async () => {
    const m = await activatedMesh({ managedStore: true, progress: (l) => progress.push(l) }, ["c1", "n0"]);
    ({ mesh, coordinator: c1 } = m);
    nodes.push(m.node);
  }, 90_000);

  afterAll(async () => {
    process.stdout.write(`add-coordinator crash driver: ${tally.exercised} crash points exercised, ${tally.checks} invariant checks\n`);
    await mesh?.close();
  });

  const publicKey = (p: LocalPeer): Promise<string> => wgPublicKey(mesh, p);
  const opens = opensWith;
  /** addCoordinators runs meshctl add-coordinators, again while the restarted Coordinator says it is still restoring its role (UNAVAILABLE). */
  const addCoordinators = async (x: LocalPeer) => {
    const run = () => mesh.admin.meshctl(["add-coordinators", "--coordinator", c1.endpoint, "--admin-dir", mesh.adminDir!, "--coordinators", x.endpoint, "--measurements", mesh.measurementsFile]);
    for (const until = Date.now() + 60_000; ; ) {
      const r = await run();
      if (!/restoring its role/.test(r.stderr) || Date.now() > until) return r;
      await new Promise((res) => setTimeout(res, 1_000));
    }
  };

  /** invariants checks the mesh after the crash and restart and returns whether `x` is a Coordinator in the set. */
  async function invariants(x: LocalPeer): Promise<boolean> {
    const peers = await waitFor(() => mesh.admin.peers(c1.vpnIP!).catch(() => undefined), { what: "meshctl peers from the restarted mesh", timeoutMs: 60_000 });
    const ips = peers.map((p) => p.vpnIP);
    const keys = peers.map((p) => p.vpnPubKey);
    expect(new Set(ips).size, `no VPN IP twice: ${ips.join(",")}`).toBe(ips.length);
    expect(new Set(keys).size, "no WireGuard key twice").toBe(keys.length);
    tally.checks += 2;
    const xKey = await publicKey(x);
    const inSet = peers.some((p) => p.vpnPubKey === xKey);
    if (inSet) expect(peers.find((p) => p.vpnPubKey === xKey)!.role).toBe("coordinator");
    for (const p of [c1, ...nodes, ...(inSet ? [x] : [])]) {
      const own = await publicKey(p);
      const want = keys.filter((k) => k !== own).sort().join(",");
      await waitFor(async () => ((await mesh.wgPeers(p)).sort().join(",") === want ? true : undefined), { what: `${p.label}'s device to list exactly the peer set`, timeoutMs: convergeMs });
      tally.checks++;
    }
    if (inSet) {
      const admin = await readAdminFile(mesh.adminDir!, "no admin.json");
      expect(await opens(x, stateDiskKey(await readFile(mesh.masterSecretFile), admin.clusterID, await diskUUID(x))), `${x.label}'s disk opens with its derived key`).toBe(true);
      expect(await opens(x, await readFile(x.diskInitialKeyFile)), `${x.label}'s disk no longer opens with its initial key`).toBe(false);
      tally.checks += 2;
    }
    return inSet;
  }

  /** afterwards: the admin adds a Node (a commit: it needs the store's quorum); a new Coordinator in the set is removed again. */
  async function afterwards(x: LocalPeer, inSet: boolean): Promise<void> {
    const [fresh] = (await mesh.startPeers([`n${++n}x`])) as [LocalPeer];
    const r = await mesh.addNodes([fresh]);
    expect(r.exitCode, r.stderr).toBe(0);
    nodes.push(fresh);
    tally.checks++;
    if (inSet) {
      const xKey = await publicKey(x);
      const ip = (await mesh.admin.peers(c1.vpnIP!)).find((p) => p.vpnPubKey === xKey)!.vpnIP;
      const rm = await mesh.admin.meshctl(["remove-coordinator", "--coordinator", c1.endpoint, "--admin-dir", mesh.adminDir!, "--vpn-ip", ip, "--measurements", mesh.measurementsFile]);
      expect(rm.exitCode, rm.stderr).toBe(0);
    }
    await x.stop();
  }

  const diagnose = (): void => diagnoseOnFailure(progress, () => mesh);

  for (const point of activatingPoints) {
    it(`the activating Coordinator dies ${point}; restarted, it leaves no ghost; the admin adds a Node afterwards`, async () => {
      diagnose();
      await c1.crash({ meshdOnly: true });
      await c1.restartMeshd({ AM_CRASH_AT: point });
      const [x] = (await mesh.startPeers([`x${++n}`])) as [LocalPeer];
      const r = await addCoordinators(x);
      expect(await exitOf(c1, 60_000), "meshd died at the crash point").toMatch(/SIGKILL/);
      expect(c1.processes.at(-1)!.logTail(60)).toContain(`crash point ${point} reached`);
      tally.exercised++;
      expect(r.exitCode, "add-coordinators cannot succeed against a Coordinator that died mid-way").not.toBe(0);
      await c1.restartMeshd();
      const inSet = await invariants(x);
      // Until its member is promoted it is rolled back (also when it had the secrets already); once promoted it stays.
      expect(inSet, "in the set exactly when it was promoted").toBe(point === "add-coordinator:after-promote");
      if (!inSet) expect(c1.processes.at(-1)!.logTail(200), "the restarted Coordinator rolled back what it left pending").toContain("rolling back the activation of a further Coordinator");
      tally.checks += 2;
      await afterwards(x, inSet);
    }, 240_000);
  }

  for (const point of newPoints) {
    it(`the new Coordinator dies ${point}; restarted, it is a working Coordinator or no trace of it is left; the admin adds a Node afterwards`, async () => {
      diagnose();
      const [x] = (await mesh.startPeers([`x${++n}`], { meshdEnv: { AM_CRASH_AT: point } })) as [LocalPeer];
      const r = await addCoordinators(x);
      expect(await exitOf(x, 60_000), "meshd died at the crash point").toMatch(/SIGKILL/);
      tally.exercised++;
      if (point !== "additional-coordinator:after-role") expect(r.exitCode, "add-coordinators reports the Coordinator it could not finish").not.toBe(0);
      await x.restartMeshd();
      const inSet = await invariants(x);
      if (point === "additional-coordinator:after-role") {
        expect(inSet, "it had become a Coordinator: restarted, it is one again").toBe(true);
        tally.checks++;
      }
      await afterwards(x, inSet);
    }, 240_000);
  }

  it("every crash point was exercised", () => {
    expect(tally.exercised).toBe(activatingPoints.length + newPoints.length);
  });
});
