/**
 * What the VM tier's mesh tests share: meshd's command line in a guest, its log, waiting until it
 * serves (slow is not stuck), diagnosing failures, timing lines for scripts/vm-repeat.sh, and the
 * admin's WireGuard tunnel in the admin namespace.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stateDiskKey } from "../../src/core/keys.js";
import { until } from "../helpers/wait.js";
import { repoRoot, VmCluster, type Vm, type VmOptions } from "./vm.js";

/** meshdCommand is meshd in a guest: vTPM device, kernel WireGuard, /dev/vda as the state disk. */
export const meshdCommand = (ip: string, extra = ""): string =>
  `node ${repoRoot}/bin/meshd.js --listen ${ip}:9000 --vpn kernel --attestation tpm --tpm device ` +
  `--disk /dev/vda --state-dir /var/lib/meshd --update-interval 2${extra ? ` ${extra}` : ""}`;

/** vmStep prints one timing for scripts/vm-repeat.sh ("vm step: <file> <what> <seconds> s"). */
export const vmStep = (file: string, what: string, seconds: number, extra = ""): void =>
  console.info(`vm step: ${file} ${what} ${seconds.toFixed(1)} s${extra ? ` (${extra})` : ""}`);

/** meshdLog is the tail of meshd's log in a guest (its share dir). */
export function meshdLog(vm: Vm, lines = 30): string {
  try {
    return readFileSync(join(vm.shareDir, "meshd.log"), "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no meshd log)";
  }
}

/** GuestMesh bundles the cluster-wide helpers of one test file. */
export class GuestMesh {
  readonly #started = Date.now();
  /** dir is the file's temp dir on the host (admin files, policies, the secret). */
  readonly dir: string;

  constructor(
    readonly cluster: VmCluster,
    readonly file: string,
    readonly vms: Vm[] = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `am-vm-${file}-`));
  }

  /**
   * boot checks dist/ is fresh, creates the cluster, starts the VMs (each at its expected address,
   * `meshd` as a service) and waits until every meshd serves.
   */
  static async boot(file: string, options: VmOptions[], ips: string[]): Promise<GuestMesh> {
    const built = statSync(join(repoRoot, "dist/src/cmd/meshd.js")).mtimeMs;
    if (statSync(join(repoRoot, "src/cmd/meshd.ts")).mtimeMs > built) throw new Error("dist/ is stale: run npm run build");
    const cluster = await VmCluster.create();
    const { accel, image, setupMs } = cluster.info;
    console.info(`vm ${file}: accel ${accel.name}; program image ${image ? `${image.built ? "built" : "cached"} (${image.entries.length} paths)` : "off (AM_VM_IMAGE=0)"}; setup ${setupMs} ms`);
    const t0 = Date.now();
    const gm = new GuestMesh(cluster, file, await cluster.startAll(options));
    gm.vms.forEach((vm, i) => {
      if (vm.ip !== ips[i]) throw new Error(`${vm.name} came up at ${vm.ip}, not ${ips[i]}`);
    });
    await gm.waitServing(gm.vms, t0);
    return gm;
  }

  /** close removes the admin tunnel, the VMs and the temp dir, and prints the file's time. */
  async close(adminIf: string | undefined): Promise<void> {
    await this.adminTunnelDown(adminIf, this.dir);
    await this.cluster.destroy();
    rmSync(this.dir, { recursive: true, force: true });
    console.info(`vm file: ${this.file} ${((Date.now() - this.#started) / 1000).toFixed(1)} s`);
  }

  /** meshctl runs meshctl in the admin namespace (never rejects: check exitCode). */
  meshctl(args: string[], timeoutMs = 300_000) {
    return this.cluster.admin("node", [`${repoRoot}/bin/meshctl.js`, ...args], { timeoutMs, reject: false });
  }

  /** adminPing is one ping from the admin namespace. */
  async adminPing(ip: string): Promise<boolean> {
    return (await this.cluster.network.exec("ping", ["-c", "1", "-W", "2", ip], { reject: false })).exitCode === 0;
  }

  /** diagnose describes every VM in `which` (meshd's log, ps, console) and the guests' network state. */
  async diagnose(which: Vm[]): Promise<string> {
    const parts = await Promise.all(
      which.map(async (vm) => {
        const net = vm.running ? await vm.exec("wg show all; ip -4 addr; ip route", { timeoutMs: 8_000 }).then((r) => r.stdout, (e: Error) => e.message.split("\n")[0]) : "";
        return `${await vm.diagnose()}\n--- network\n${net}`;
      }),
    );
    return parts.join("\n");
  }

  /** explained runs `work`; a failure is rethrown with the diagnosis of `which`. */
  async explained<T>(which: Vm[], work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await this.diagnose(which)}`, { cause: err });
    }
  }

  /**
   * waitServing waits for meshd's pubapi on every VM. A meshd that exits (its last line "meshd:
   * <reason>") fails at once; one that is slow (log, CPU time or reads advancing) gets up to 6 min;
   * one that makes no progress for 90 s fails then, with the guest's diagnosis. Prints the steps.
   */
  async waitServing(vms: Vm[], t0: number): Promise<void> {
    await Promise.all(
      vms.map(async (vm) => {
        const p = vm.process("meshd")!;
        let firstLine: number | undefined;
        await p.waitFor("meshd to serve", async () => {
          const log = meshdLog(vm);
          if (/^meshd: /m.test(log)) throw new Error(`meshd on ${vm.name} exited:\n${log}\n${await vm.diagnose()}`);
          firstLine ??= /"msg"/.test(log) ? Date.now() : undefined;
          return (await this.cluster.network.canConnect(vm.ip, 9000)) ? true : undefined;
        }, { stallMs: 90_000, maxMs: 360_000 });
        const s = (ms: number) => (ms - t0) / 1000;
        vmStep(this.file, `${vm.name} booted`, vm.boots[0].hostMs / 1000);
        vmStep(this.file, `${vm.name} meshd first log line`, s(firstLine ?? Date.now()));
        vmStep(this.file, `${vm.name} meshd serving`, s(Date.now()), `QEMU CPU ${vm.qemuStats()?.cpuS.toFixed(1)} s`);
      }),
    );
  }

  /** adminTunnelUp brings up the admin's wg0.conf (from `outDir`) with wireguard-go in the admin namespace; returns its interface. */
  async adminTunnelUp(outDir: string, dir: string): Promise<string> {
    const ifName = `amvm${randomBytes(4).toString("hex")}`;
    writeFileSync(join(dir, `${ifName}.conf`), readFileSync(join(outDir, "wg0.conf")), { mode: 0o600 });
    const up = await this.cluster.network.exec("env", ["WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "wg-quick", "up", join(dir, `${ifName}.conf`)], { reject: false });
    if (up.exitCode !== 0) throw new Error(`wg-quick up failed: ${up.stderr}`);
    return ifName;
  }

  /** adminTunnelDown removes the admin's tunnel (best effort). */
  async adminTunnelDown(ifName: string | undefined, dir: string): Promise<void> {
    if (ifName) await this.cluster.network.exec("wg-quick", ["down", join(dir, `${ifName}.conf`)], { reject: false });
  }

  /** pingAll waits until the admin pings every IP in `ips` through the VPN. */
  async pingAll(ips: string[], timeoutMs = 30_000): Promise<void> {
    for (const ip of ips) await until(`admin pings ${ip}`, () => this.adminPing(ip), timeoutMs);
  }

  /**
   * derivedKeyProblems checks that each guest's /dev/vda opens with the key derived from the master
   * secret and no longer with its initial key, and that the state dir is the mapped volume; returns
   * what failed (empty: all well).
   */
  async derivedKeyProblems(vms: Vm[], secret: Buffer, clusterIdHex: string): Promise<string[]> {
    const problems: string[] = [];
    for (const vm of vms) {
      const uuid = (await vm.run("cryptsetup luksUUID /dev/vda")).trim();
      writeFileSync(join(vm.shareDir, "derived.key"), stateDiskKey(secret, Buffer.from(clusterIdHex, "hex"), uuid), { mode: 0o600 });
      try {
        if ((await vm.exec("cryptsetup open --test-passphrase --key-file /run/vm/derived.key /dev/vda")).exitCode !== 0) problems.push(`${vm.name}: the derived key does not open /dev/vda`);
        if ((await vm.exec("cryptsetup open --test-passphrase --key-file /run/cryptsetup-keys.d/state.key /dev/vda")).exitCode === 0) problems.push(`${vm.name}: the initial key still opens /dev/vda`);
        if (!/\/dev\/mapper\/state/.test(await vm.run("findmnt -n -o SOURCE /var/lib/meshd"))) problems.push(`${vm.name}: /var/lib/meshd is not the mapped state volume`);
      } finally {
        rmSync(join(vm.shareDir, "derived.key"), { force: true });
      }
    }
    return problems;
  }
}
