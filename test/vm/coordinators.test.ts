// The VM tier's Coordinator test (issue 11): two Coordinator VMs on the etcd cluster meshd manages
// (--store managed, each member's data inside its dm-crypt state volume) and one Node VM, each with
// its own vTPM and kernel WireGuard. A Coordinator VM reboots with its state disk locked and gets
// its key from the other Coordinator (which, one of two, has lost its quorum meanwhile); then both
// Coordinators reboot, nobody can hand out a key, and `meshctl recover` brings the mesh back.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../helpers/wait.js";
import { GuestMesh, meshdCommand, meshdLog, vmStep } from "./mesh-steps.js";
import { canRunVM, type Vm, type VmCluster } from "./vm.js";

const reason = canRunVM();
const step = (what: string, seconds: number, extra = ""): void => vmStep("coordinators", what, seconds, extra);
const names = ["c1", "c2", "n1"];
const ipOf = (i: number): string => `198.18.1.${i + 2}`;
const meshd = (ip: string): string => meshdCommand(ip, "--store managed");
/** progress bounds a wait on a guest: slow is fine while it makes progress, stuck fails after 90 s. */
const progress = { stallMs: 90_000, maxMs: 300_000 };

describe.skipIf(reason !== undefined)(`vm coordinators${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let cluster: VmCluster;
  let gm: GuestMesh;
  let vms: Vm[];
  let dir: string;
  let out: string;
  let policy: string;
  let admin: { clusterId: string };
  let adminIf: string | undefined;
  /** vpnIPs of c1, c2, n1, read from their devices after activation. */
  let vpnIPs: string[] = [];
  const secret = randomBytes(32);

  const vpnIPOf = async (vm: Vm): Promise<string> => {
    const m = /inet (\d+\.\d+\.\d+\.\d+)/.exec(await vm.run("ip -4 -o addr show dev wg0"));
    if (!m) throw new Error(`${vm.name} has no VPN address on wg0`);
    return m[1];
  };
  /** waitFor waits on `vm`'s meshd for `what`; a failure carries the diagnosis of `which`. */
  const waitOn = (vm: Vm, what: string, probe: () => Promise<true | undefined>, which: Vm[] = vms) =>
    gm.explained(which, () => vm.process("meshd")!.waitFor(what, probe, progress));

  beforeAll(async () => {
    gm = await GuestMesh.boot(
      "coordinators",
      // A Coordinator's disk holds an etcd member, which preallocates a 64 MB write-ahead log.
      names.map((name, i) => ({ name, modules: ["wireguard", "dm_crypt"], diskMiB: name.startsWith("c") ? 256 : 64, provisionTpm: true, services: { meshd: meshd(ipOf(i)) } })),
      names.map((_, i) => ipOf(i)),
    );
    ({ cluster, vms, dir } = gm);
    out = join(dir, "out");
    policy = join(dir, "measurements.json");
  }, 480_000);

  afterAll(async () => {
    await gm?.close(adminIf);
  }, 120_000);

  it("activates 2 Coordinators (an etcd member each, inside the encrypted volume) and 1 Node; everyone pings", async () => {
    const [c1, c2, n1] = vms as [Vm, Vm, Vm];
    const m = await gm.meshctl(["measurements", "--from", `${c1.ip}:9000`, "--out", policy]);
    expect(m.exitCode, m.stderr).toBe(0);
    writeFileSync(join(dir, "secret"), secret, { mode: 0o600 });
    const t = Date.now();
    const act = await gm.meshctl([
      "activate", "--coordinator", `${c1.ip}:9000`, "--coordinators", `${c2.ip}:9000`, "--nodes", `${n1.ip}:9000`,
      "--master-secret", join(dir, "secret"), "--measurements", policy, "--out", out,
    ]);
    if (act.exitCode !== 0) throw new Error(`meshctl activate failed: ${act.stderr}\n${await gm.diagnose(vms)}`);
    admin = JSON.parse(readFileSync(join(out, "admin.json"), "utf8"));
    adminIf = await gm.adminTunnelUp(out, dir);
    vpnIPs = await Promise.all(vms.map(vpnIPOf));
    await gm.explained(vms, () => gm.pingAll(vpnIPs, 60_000));
    step("activated, everyone pings", (Date.now() - t) / 1000);
    for (const c of [c1, c2]) {
      expect(await c.run("pgrep -x etcd >/dev/null && echo etcd")).toContain("etcd");
      expect(await c.run("findmnt -n -o SOURCE -T /var/lib/meshd/etcd")).toMatch(/\/dev\/mapper\/state/);
    }
    expect((await n1.exec("pgrep -x etcd")).exitCode).not.toBe(0);
  }, 420_000);

  it("a rebooted Coordinator finds its disk locked, gets its key from the other Coordinator (without quorum), rejoins etcd and serves Nodes again", async () => {
    const [c1, c2, n1] = vms as [Vm, Vm, Vm];
    const t = Date.now();
    const boot = await c2.reboot();
    step("c2 rebooted", boot.hostMs / 1000);
    await waitOn(c2, "c2 to unlock its disk with the key from c1", async () => (/state disk unlocked with the delivered key/.test(meshdLog(c2, 200)) ? true : undefined));
    step("c2 unlocked", (Date.now() - t) / 1000);
    // How the key came (for the repeat logs): the asks, the refusals, the release.
    const lines = (vm: Vm, re: RegExp) => meshdLog(vm, 400).split("\n").filter((l) => re.test(l)).map((l) => `  ${vm.name}: ${l.slice(0, 400)}`);
    console.info(["disk key of c2:", ...lines(c2, /disk key|locked|unlocked/), ...lines(c1, /disk key|quorum|StateDiskKey/)].join("\n"));
    // The key came while c1's member had no quorum (one of two): c1 released it from its copy.
    expect(meshdLog(c1, 400)).toMatch(/store quorum lost: releasing a disk key from this member's copy/);
    // Quorum again: c2 serves the vpnapi (from the store) with the Node in its peer set, and the Node reaches it.
    await waitOn(c2, "c2 to serve the vpnapi", async () => {
      const r = await gm.meshctl(["peers", "--vpn-endpoint", `${vpnIPs[1]}:9027`, "--json"], 20_000);
      return r.exitCode === 0 && r.stdout.includes(vpnIPs[2]) ? true : undefined;
    });
    step("c2 serving again", (Date.now() - t) / 1000);
    expect((await c2.exec(`ping -c 1 -W 2 ${vpnIPs[2]}`)).exitCode).toBe(0);
    await until("n1 to ping c2 through the VPN", async () => (await n1.exec(`ping -c 1 -W 2 ${vpnIPs[1]}`)).exitCode === 0, 30_000);
    expect(await c2.run("findmnt -n -o SOURCE /var/lib/meshd")).toMatch(/\/dev\/mapper\/state/);
  }, 600_000);

  it("both Coordinators reboot: both wait, `meshctl recover` brings them back, the Node re-joins, every disk opens with its derived key", async () => {
    const [c1, c2, n1] = vms as [Vm, Vm, Vm];
    const t = Date.now();
    await Promise.all([c1.reboot(), c2.reboot()]);
    step("c1 and c2 rebooted", (Date.now() - t) / 1000);
    // Neither can give the other its key: each waits (GetState names the disk it waits for).
    for (const c of [c1, c2]) {
      await waitOn(c, `${c.name} to wait for its disk key, serving its pubapi`, async () =>
        /state disk is locked: waiting for its key/.test(meshdLog(c, 200)) && (await cluster.network.canConnect(c.ip, 9000)) ? true : undefined,
      );
    }
    for (const c of [c1, c2]) {
      const r = await gm.meshctl(["recover", "--endpoint", `${c.ip}:9000`, "--master-secret", join(dir, "secret"), "--measurements", policy, "--admin-dir", out], 120_000);
      // The second may have had its key from the first by then: it then waits for nothing.
      if (r.exitCode !== 0 && !/waits for no state-disk key/.test(r.stderr)) throw new Error(`meshctl recover ${c.name} failed: ${r.stderr}\n${await gm.diagnose([c])}`);
    }
    step("recovered", (Date.now() - t) / 1000);
    await gm.explained(vms, async () => {
      await gm.pingAll(vpnIPs, 120_000);
      await until("n1 to ping both Coordinators", async () => (await n1.exec(`ping -c 1 -W 2 ${vpnIPs[0]} && ping -c 1 -W 2 ${vpnIPs[1]}`)).exitCode === 0, 60_000);
    });
    // The Coordinators serve again, and the Node follows them: a Coordinator's acknowledgements are
    // in memory, so an applied version there means the Node re-joined after the reboot.
    await waitOn(n1, "n1 to acknowledge a version to a rebooted Coordinator", async () => {
      for (const ip of [vpnIPs[0], vpnIPs[1]]) {
        const r = await gm.meshctl(["peers", "--vpn-endpoint", `${ip}:9027`, "--json"], 20_000);
        if (r.exitCode !== 0) continue;
        const res = JSON.parse(r.stdout) as { peers: Array<{ peer: { vpnIP: string }; appliedVersion: number }> };
        if (res.peers.some((p) => p.peer.vpnIP === vpnIPs[2] && p.appliedVersion > 0)) return true;
      }
      return undefined;
    });
    step("mesh back after recover", (Date.now() - t) / 1000);
    expect(await gm.derivedKeyProblems(vms, secret, admin.clusterId)).toEqual([]);
  }, 900_000);
});
