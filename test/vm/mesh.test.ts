// The VM tier's mesh test (issue 6): every peer a QEMU VM with its own vTPM at /dev/tpmrm0, kernel
// WireGuard and a dm-crypt state disk; the admin activates from the admin namespace; a Node VM is
// rebooted and re-joins with no admin action.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../helpers/wait.js";
import { GuestMesh, meshdCommand, meshdLog, vmStep } from "./mesh-steps.js";
import { canRunVM, type Vm, type VmCluster } from "./vm.js";

const reason = canRunVM();
const step = (what: string, seconds: number, extra = ""): void => vmStep("mesh", what, seconds, extra);
const names = ["coord", "node1", "node2"];
const ipOf = (i: number): string => `198.18.1.${i + 2}`;
const meshd = (ip: string): string => meshdCommand(ip);

describe.skipIf(reason !== undefined)(`vm mesh${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let cluster: VmCluster;
  let gm: GuestMesh;
  let vms: Vm[];
  let dir: string;
  let admin: { ownerId: string; clusterId: string; adminVPNIP: string };
  let adminIf: string | undefined;
  const secret = randomBytes(32);

  const meshctl = (args: string[], timeoutMs = 300_000) => gm.meshctl(args, timeoutMs);
  const adminPing = (ip: string) => gm.adminPing(ip);
  const diagnose = (which: Vm[]) => gm.diagnose(which);
  const explained = <T>(which: Vm[], work: () => Promise<T>): Promise<T> => gm.explained(which, work);

  beforeAll(async () => {
    gm = await GuestMesh.boot(
      "mesh",
      names.map((name, i) => ({ name, modules: ["wireguard", "dm_crypt"], diskMiB: 64, provisionTpm: true, services: { meshd: meshd(ipOf(i)) } })),
      names.map((_, i) => ipOf(i)),
    );
    ({ cluster, vms, dir } = gm);
  }, 480_000);

  afterAll(async () => {
    await gm?.close(adminIf);
  }, 120_000);

  it("activates 1 Coordinator + 2 Nodes with a policy of the vTPMs' PCRs; everyone pings through kernel WireGuard", async () => {
    // The policy, trust on first use: PCRs 0-9 as the Coordinator's vTPM shows them through aTLS,
    // its AK anchored by the test CA the vTPMs were provisioned with (so allowTestRoot is set).
    const policyFile = join(dir, "measurements.json");
    const m = await meshctl(["measurements", "--from", `${vms[0].ip}:9000`, "--out", policyFile]);
    expect(m.exitCode, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/vouched for by .*test/i);
    const policy = JSON.parse(readFileSync(policyFile, "utf8")) as { tpm: { pcrs: Record<string, string>; allowTestRoot: boolean } };
    expect(policy.tpm.allowTestRoot).toBe(true);
    expect(Object.keys(policy.tpm.pcrs)).not.toContain("11");
    const v = await meshctl(["verify", "--endpoint", `${vms[0].ip}:9000`, "--measurements", policyFile]);
    expect(v.exitCode, v.stderr).toBe(0);
    writeFileSync(join(dir, "secret"), secret, { mode: 0o600 });
    const out = join(dir, "out");
    const activateStart = Date.now();
    const act = await meshctl([
      "activate", "--coordinator", `${vms[0].ip}:9000`, "--nodes", `${vms[1].ip}:9000,${vms[2].ip}:9000`,
      "--master-secret", join(dir, "secret"), "--measurements", join(dir, "measurements.json"), "--out", out,
    ]);
    if (act.exitCode !== 0) throw new Error(`meshctl activate failed: ${act.stderr}\n${await diagnose(vms)}`);
    admin = JSON.parse(readFileSync(join(out, "admin.json"), "utf8"));
    // The admin's tunnel: userspace WireGuard in the admin namespace (the host has no kernel module).
    adminIf = await gm.adminTunnelUp(out, dir);
    await explained(vms, async () => {
      await gm.pingAll(["10.118.0.1", "10.118.0.12", "10.118.0.13"]);
      // Node 1 reaches Node 2 through the VPN.
      await until("node1 pings node2's VPN IP", async () => (await vms[1].exec("ping -c 1 -W 2 10.118.0.13")).exitCode === 0, 30_000);
    });
    step("activated, everyone pings", (Date.now() - activateStart) / 1000);
    // Kernel WireGuard, not wireguard-go, in every guest.
    for (const vm of vms) {
      expect(await vm.run("ip -d link show wg0")).toMatch(/wireguard/);
      expect((await vm.exec("pgrep -x wireguard-go")).exitCode, vm.name).not.toBe(0);
      expect(await vm.run("wg show wg0 peers | wc -l")).toMatch(/^\s*3\s*$/);
    }
  }, 420_000);

  it("each guest's /dev/vda opens with the key derived from the master secret, not with its initial key", async () => {
    expect(await gm.derivedKeyProblems(vms, secret, admin.clusterId)).toEqual([]);
  }, 120_000);

  it("a rebooted Node gets its disk key from the Coordinator and re-joins with the same VPN IP and key", async () => {
    const node2 = vms[2];
    const keyBefore = (await node2.run("wg show wg0 public-key")).trim();
    const boot = await node2.reboot();
    const bootedAt = Date.now();
    await node2.process("meshd")!.waitFor("node2 reachable through the VPN again", async () => ((await adminPing("10.118.0.13")) ? true : undefined), { stallMs: 90_000, maxMs: 240_000 });
    const rejoinS = (Date.now() - bootedAt) / 1000;
    step("node2 rebooted", boot.hostMs / 1000);
    step("node2 reachable after its reboot", rejoinS);
    expect(rejoinS).toBeLessThan(60);
    expect((await node2.run("wg show wg0 public-key")).trim()).toBe(keyBefore);
    expect(await node2.run("ip -4 -o addr show dev wg0")).toContain("10.118.0.13/16");
    expect(await node2.run("findmnt -n -o SOURCE /var/lib/meshd")).toMatch(/\/dev\/mapper\/state/);
    expect(meshdLog(node2)).toContain("state disk unlocked with the key from the Coordinator");
  }, 420_000);

  it("a Node rebooted while the Coordinator is down retries with backoff and re-joins once it is back", async () => {
    const [coord, node1] = [vms[0], vms[1]];
    await coord.run("pkill -TERM -f bin/meshd.js; for i in $(seq 50); do pgrep -f bin/meshd.js >/dev/null || exit 0; sleep 0.2; done; exit 1");
    const t0 = Date.now();
    await node1.reboot();
    const progress = { stallMs: 90_000, maxMs: 240_000 };
    await node1.process("meshd")!.waitFor("node1 to report that no Coordinator answers", () => (/re-join: no disk key yet/.test(meshdLog(node1)) ? true : undefined), progress);
    step("node1 rebooted, retrying", (Date.now() - t0) / 1000);
    // The Coordinator comes back (same VM, its state disk still mapped): it restores its role.
    const t1 = Date.now();
    const coordMeshd = await coord.spawn("meshd", meshd(coord.ip));
    await coordMeshd.waitFor("coord's meshd to serve again", async () => ((await cluster.network.canConnect(coord.ip, 9000)) ? true : undefined), progress);
    step("coord meshd serving again", (Date.now() - t1) / 1000);
    await explained([coord], () =>
      node1.process("meshd")!.waitFor("node1 reachable through the VPN again", async () => ((await adminPing("10.118.0.12")) ? true : undefined), progress),
    );
    step("node1 reachable after the coordinator's return", (Date.now() - t1) / 1000);
    expect(meshdLog(node1)).toContain("state disk unlocked with the key from the Coordinator");
  }, 600_000);
});
