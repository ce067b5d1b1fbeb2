/**
 * Crash-only meshd (issue 14): a fault-injection driver over named crash points (src/shared/crash.ts).
 * For each point it makes meshd SIGKILL itself there (AM_CRASH_AT, read by no production flag),
 * starts it again with the same flags, and checks the invariants: the peer set holds no VPN IP or
 * key twice, every running peer's device converges to it, the peer that was being activated is
 * either in the set and a working Node or not in the set at all (never a ghost), every member's LUKS2
 * state disk (a file) opens with its derived key and no longer with its initial one, the interrupted
 * peer's disk still opens with one of the two, and the admin can still add a Node afterwards. Runs
 * dist/: build first.
 */
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

const reason = canRunE2E(localMeshTools);
const updateIntervalSec = 1;
const convergeMs = 20_000;

/** Points on the activated Node's side: the fresh peer being added runs with the crash point. */
const nodePoints: CrashPoint[] = ["node-activation:after-node-state", "node-activation:after-mark", "node-activation:after-disk-key", "node-activation:after-vpn"];
/** Points on the Coordinator's side: the Coordinator is restarted with the crash point, then a Node is added. */
const coordinatorPoints: CrashPoint[] = ["coordinator-activation:after-ip", "coordinator-activation:after-disk-claimed", "coordinator-activation:after-peer-stored", "atomic-write:before-rename", "atomic-write:after-rename"];

describe.skipIf(reason !== undefined)(`crash points (meshd SIGKILLed at each, restarted with the same flags)${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let mesh: LocalMesh;
  let coordinator: LocalPeer;
  const nodes: LocalPeer[] = [];
  const progress: string[] = [];
  const tally: Tally = { exercised: 0, checks: 0 };
  let n = 0;

  beforeAll(async () => {
    const m = await activatedMesh({ updateIntervalSec, progress: (l) => progress.push(l) }, ["coord", "node0"]);
    ({ mesh, coordinator } = m);
    nodes.push(m.node);
  }, 90_000);

  afterAll(async () => {
    process.stdout.write(`crash driver: ${tally.exercised} crash points exercised, ${tally.checks} invariant checks\n`);
    await mesh?.close();
  });

  const diagnose = (): void => diagnoseOnFailure(progress, () => mesh);
  const opens = opensWith;

  /** derivedKey is the disk key the cluster derives for the peer's disk (HKDF of the master secret, cluster ID, disk UUID). */
  const derivedKey = async (p: LocalPeer): Promise<Buffer> => {
    const admin = await readAdminFile(mesh.adminDir!, "no admin.json");
    return stateDiskKey(await readFile(mesh.masterSecretFile), admin.clusterID, await diskUUID(p));
  };

  /**
   * disksHold checks the disks: every peer in the set opens with its derived key and no longer with
   * its initial one; the interrupted peer, wherever it ended, opens with one of the two (a crash never
   * leaves a disk without a working key).
   */
  async function disksHold(members: LocalPeer[], subject: LocalPeer | undefined): Promise<void> {
    for (const p of members) {
      expect(await opens(p, await derivedKey(p)), `${p.label}'s disk opens with its derived key`).toBe(true);
      expect(await opens(p, await readFile(p.diskInitialKeyFile)), `${p.label}'s disk no longer opens with its initial key`).toBe(false);
      tally.checks += 2;
    }
    if (subject) {
      const either = (await opens(subject, await derivedKey(subject))) || (await opens(subject, await readFile(subject.diskInitialKeyFile)));
      expect(either, `${subject.label}'s disk still opens with a key`).toBe(true);
      tally.checks++;
    }
  }

  const publicKey = (p: LocalPeer): Promise<string> => wgPublicKey(mesh, p);

  /**
   * invariants checks the mesh after a crash and restart; `subject` is the peer whose activation the
   * crash interrupted. Returns whether the subject ended up in the peer set.
   */
  async function invariants(subject: LocalPeer): Promise<boolean> {
    const peers = await waitFor(() => mesh.admin.peers(coordinator.vpnIP!).catch(() => undefined), { what: "meshctl peers from the restarted mesh", timeoutMs: 30_000 });
    const ips = peers.map((p) => p.vpnIP);
    const keys = peers.map((p) => p.vpnPubKey);
    expect(new Set(ips).size, `no VPN IP twice: ${ips.join(",")}`).toBe(ips.length);
    expect(new Set(keys).size, "no WireGuard key twice").toBe(keys.length);
    tally.checks += 2;
    const subjectKey = await publicKey(subject);
    const inSet = keys.includes(subjectKey);
    const running = [coordinator, ...nodes, ...(inSet ? [subject] : [])];
    for (const p of running) {
      const own = await publicKey(p);
      const want = keys.filter((k) => k !== own).sort();
      await waitFor(async () => ((await mesh.wgPeers(p)).sort().join(",") === want.join(",") ? true : undefined), { what: `${p.label}'s device to list exactly the peer set`, timeoutMs: convergeMs });
      tally.checks++;
    }
    if (inSet) {
      // In the set means activated for real: it answers through the VPN.
      const ip = peers.find((p) => p.vpnPubKey === subjectKey)!.vpnIP;
      await waitFor(async () => (await mesh.net.exec(coordinator.netns, "ping", ["-c", "1", "-W", "1", ip], { reject: false })).exitCode === 0 || undefined, { what: `the Coordinator to reach ${subject.label} at ${ip}`, timeoutMs: convergeMs });
      tally.checks++;
    }
    await disksHold([coordinator, ...nodes, ...(inSet ? [subject] : [])], inSet ? undefined : subject);
    return inSet;
  }

  /** addsANode shows the admin can still add a Node: it is activated and every device lists it. */
  async function addsANode(): Promise<void> {
    const [fresh] = (await mesh.startPeers([`node${++n}x`])) as [LocalPeer];
    const r = await mesh.addNodes([fresh]);
    expect(r.exitCode, r.stderr).toBe(0);
    nodes.push(fresh);
    tally.checks++;
  }

  for (const point of nodePoints) {
    it(`Node side, ${point}: the Node dies there, add-nodes reports it, the restarted Node is no ghost, and the admin adds a Node afterwards`, async () => {
      diagnose();
      const [x] = (await mesh.startPeers([`node${++n}`], { meshdEnv: { AM_CRASH_AT: point } })) as [LocalPeer];
      const r = await mesh.addNodes([x]);
      expect(await exitOf(x), "meshd died at the crash point").toMatch(/SIGKILL/);
      tally.exercised++;
      expect(r.exitCode, "add-nodes reports the Node it could not finish").not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toContain(x.endpoint);
      await x.restartMeshd();
      const inSet = await invariants(x);
      if (inSet) nodes.push(x);
      await addsANode();
    }, 120_000);
  }

  for (const point of coordinatorPoints) {
    it(`Coordinator side, ${point}: the Coordinator dies there, comes back with the same flags, the mesh converges without a ghost, and the admin adds a Node afterwards`, async () => {
      diagnose();
      await coordinator.crash({ meshdOnly: true });
      // Started with the crash point: it may die already while it restores (a durable write), else during add-nodes.
      const early = await coordinator.restartMeshd({ AM_CRASH_AT: point }).then(
        () => false,
        () => true,
      );
      const [x] = (await mesh.startPeers([`node${++n}`])) as [LocalPeer];
      if (!early) {
        const r = await mesh.addNodes([x]);
        expect(r.exitCode, "add-nodes cannot succeed against a Coordinator that died mid-way").not.toBe(0);
        expect(r.stderr, "and it says where to look").toContain("'meshctl status' shows which");
      }
      expect(await exitOf(coordinator), "meshd died at the crash point").toMatch(/SIGKILL/);
      expect(coordinator.processes.at(-1)!.logTail(40)).toContain(`crash point ${point} reached`);
      tally.exercised++;
      await coordinator.restartMeshd();
      const inSet = await invariants(x);
      if (inSet) nodes.push(x);
      await addsANode();
    }, 150_000);
  }

  it("meshd and its wireguard-go both killed (the device gone too): the Coordinator serves the vpnapi again within 5 s of listening, then a Node; both converge on the next change", async () => {
    diagnose();
    const vpnapiUp = async (from: LocalPeer): Promise<boolean> =>
      (await mesh.net.exec(from.netns, "timeout", ["1", "bash", "--norc", "-c", `exec 3<>/dev/tcp/${coordinator.vpnIP!}/9027`], { reject: false })).exitCode === 0;
    await coordinator.crash();
    expect((await mesh.net.exec(coordinator.netns, "wg", ["show", coordinator.wgInterface], { reject: false })).exitCode, "no device is left").not.toBe(0);
    await coordinator.restartMeshd();
    await waitFor(async () => ((await vpnapiUp(nodes[0])) ? true : undefined), { what: "the restarted Coordinator's vpnapi through the VPN", timeoutMs: 5_000 });
    tally.checks++;
    const node = nodes[0];
    await node.crash();
    await node.restartMeshd();
    const [y] = (await mesh.startPeers([`node${++n}`])) as [LocalPeer];
    const r = await mesh.addNodes([y]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await invariants(y)).toBe(true);
    nodes.push(y);
  }, 120_000);

  it("every crash point was exercised", () => {
    expect(tally.exercised).toBe(nodePoints.length + coordinatorPoints.length);
  });
});
