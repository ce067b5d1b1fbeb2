/**
 * Crash-only meshd (issue 14), the first Coordinator's own activation: for every crash point of
 * ActivateAsCoordinator (src/shared/crash.ts, "first-coordinator:*") a fresh peer's meshd SIGKILLs
 * itself there during `meshctl activate`, is started again with the same flags, and the admin
 * re-runs the same command (it keeps its keys in activate.pending.json until it is done). Checked
 * each time: meshctl's failure says to re-run, the re-run succeeds (resumed, or from the start when
 * the crash came before the commit point), every state disk opens with its derived key and no
 * longer with its initial one, both devices list exactly the other members, the Coordinator reaches
 * the Node through the VPN, no VPN IP is held twice, and the admin adds a Node afterwards.
 * One mesh with the embedded store (five points) and one with managed etcd (the store member's point
 * and the store commit). Runs dist/: build first.
 */
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateDiskKey } from "../../src/core/keys.js";
import { LocalMesh } from "../../src/localmesh/local-mesh.js";
import type { LocalPeer } from "../../src/localmesh/local-peer.js";
import { localMeshTools } from "../../src/localmesh/requirements.js";
import type { CrashPoint } from "../../src/shared/crash.js";
import { waitFor } from "../../src/shared/wait.js";
import { publicKeyOf } from "../../src/wireguard/keys.js";
import { type Tally, diagnoseOnFailure, diskUUID, exitOf, opensWith, wgPublicKey } from "../helpers/crash-driver.js";
import { canRunE2E } from "../helpers/netns.js";

const reason = canRunE2E(localMeshTools);
const convergeMs = 20_000;

const cases: Array<{ store: "embedded" | "managed"; points: CrashPoint[] }> = [
  { store: "embedded", points: ["first-coordinator:after-store", "first-coordinator:after-node-state", "first-coordinator:after-mark", "first-coordinator:after-disk-key", "first-coordinator:after-vpn"] },
  { store: "managed", points: ["first-coordinator:after-store-member", "first-coordinator:after-store"] },
];
/** Points before the commit point (the node state): the restarted peer is fresh again. */
const beforeCommit = new Set<CrashPoint>(["first-coordinator:after-store-member", "first-coordinator:after-store"]);

for (const { store, points } of cases) {
  describe.skipIf(reason !== undefined)(`first Coordinator's activation, ${store} store: meshd SIGKILLed at each point, restarted, the admin re-runs activate${reason ? ` — skipped: ${reason}` : ""}`, () => {
    let mesh: LocalMesh;
    const progress: string[] = [];
    const tally: Tally = { exercised: 0, checks: 0 };
    let n = 0;

    beforeAll(async () => {
      mesh = await LocalMesh.create({ updateIntervalSec: 1, disk: true, managedStore: store === "managed", progress: (l) => progress.push(l), readyTimeoutMs: 20_000 });
    }, 60_000);

    afterAll(async () => {
      process.stdout.write(`first-Coordinator crash driver (${store} store): ${tally.exercised} crash points exercised, ${tally.checks} invariant checks\n`);
      await mesh?.close();
    });

    const publicKey = (p: LocalPeer): Promise<string> => wgPublicKey(mesh, p);
    const opens = opensWith;

    for (const point of points) {
      it(`${point}: activate fails saying to re-run; the restarted peer is ${beforeCommit.has(point) ? "fresh again" : "the Coordinator"}; the re-run completes; disks, devices and the VPN hold; a Node is added afterwards`, async () => {
        diagnoseOnFailure(progress, () => mesh);
        const i = ++n;
        const [c] = (await mesh.startPeers([`fc${i}`], { meshdEnv: { AM_CRASH_AT: point } })) as [LocalPeer];
        const [node] = (await mesh.startPeers([`fn${i}`])) as [LocalPeer];
        const out = join(mesh.admin.dir, c.label);

        const failed = await mesh.activate(c, [node]);
        expect(await exitOf(c), "meshd died at the crash point").toMatch(/SIGKILL/);
        expect(c.processes.at(-1)!.logTail(40)).toContain(`crash point ${point} reached`);
        tally.exercised++;
        expect(failed.exitCode, "activate cannot succeed against a peer that died mid-way").not.toBe(0);
        expect(failed.stderr).toContain("re-run this same command");
        await access(join(out, "activate.pending.json")); // the admin's keys are kept
        tally.checks += 2;

        await c.restartMeshd();
        if (beforeCommit.has(point)) {
          // Fresh again: what the interrupted run wrote to its own store is gone before it serves.
          expect(c.processes.at(-1)!.logTail(80)).toMatch(store === "managed" ? /fresh peer: removed the etcd member data/ : /fresh peer: discarded what an activation interrupted/);
          tally.checks++;
        }
        const again = await mesh.activate(c, [node]);
        expect(again.exitCode, again.stderr).toBe(0);
        expect(again.stderr).toContain("resuming an interrupted activation");
        if (!beforeCommit.has(point)) {
          // The resumed Coordinator only answers with the config; meshctl activates the Node, signed.
          expect(again.stderr).toContain("resuming the activation this Coordinator committed before");
          expect(again.stderr).toContain("activating the 1 requested peer(s) not in the mesh yet (admin-signed)");
        }
        await expect(access(join(out, "activate.pending.json")), "the pending keys are gone once admin.json is written").rejects.toThrow();
        tally.checks += 2;

        const admin = JSON.parse(await readFile(join(out, "admin.json"), "utf8")) as { clusterId: string; adminVPNIP: string; coordinatorVPNIP: string };
        const secret = await readFile(mesh.masterSecretFile);
        for (const p of [c, node]) {
          expect(await opens(p, stateDiskKey(secret, Buffer.from(admin.clusterId, "hex"), await diskUUID(p))), `${p.label}'s disk opens with its derived key`).toBe(true);
          expect(await opens(p, await readFile(p.diskInitialKeyFile)), `${p.label}'s disk no longer opens with its initial key`).toBe(false);
          tally.checks += 2;
        }
        const wg0 = await readFile(join(out, "wg0.conf"), "utf8");
        const [ck, nk] = [await publicKey(c), await publicKey(node)];
        expect(wg0).toContain(ck);
        expect(wg0).toContain(nk);
        const adminKey = publicKeyOf(wg0.match(/^PrivateKey\s*=\s*(\S+)$/m)![1]);
        for (const [p, want] of [
          [c, [nk, adminKey]],
          [node, [ck, adminKey]],
        ] as const) {
          await waitFor(async () => ((await mesh.wgPeers(p)).sort().join(",") === [...want].sort().join(",") ? true : undefined), { what: `${p.label}'s device to list exactly the other members`, timeoutMs: convergeMs });
          tally.checks++;
        }
        // The store's peer set as the Coordinator returned it (wg0.conf lists every peer but the admin).
        const ips = [...wg0.matchAll(/^AllowedIPs\s*=\s*(\S+)\/32$/gm)].map((m) => m[1]).concat(admin.adminVPNIP);
        expect(ips, "the Coordinator, the Node and the admin").toHaveLength(3);
        expect(new Set(ips).size, `no VPN IP twice: ${ips.join(",")}`).toBe(ips.length);
        tally.checks++;
        const nodeIP = (await mesh.net.exec(node.netns, "ip", ["-4", "-o", "addr", "show", "dev", node.wgInterface])).stdout.match(/inet (\S+)\//)?.[1];
        expect(nodeIP, "the Node has its VPN IP").toBeDefined();
        await waitFor(async () => (await mesh.net.exec(c.netns, "ping", ["-c", "1", "-W", "1", nodeIP!], { reject: false })).exitCode === 0 || undefined, { what: `${c.label} to reach ${node.label} through the VPN`, timeoutMs: convergeMs });
        tally.checks++;

        const [more] = (await mesh.startPeers([`fm${i}`])) as [LocalPeer];
        const add = await mesh.admin.meshctl(["add-nodes", "--coordinator", c.endpoint, "--admin-dir", out, "--nodes", more.endpoint, "--measurements", mesh.measurementsFile]);
        expect(add.exitCode, add.stderr).toBe(0);
        tally.checks++;
        for (const p of [c, node, more]) await p.stop();
      }, 180_000);
    }

    it("every crash point was exercised", () => {
      expect(tally.exercised).toBe(points.length);
    });
  });
}
