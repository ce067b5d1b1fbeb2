import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { canRunVM, repoRoot, VmCluster, VmError, type Vm } from "./vm.js";

const reason = canRunVM();
const fileStart = Date.now();

// A cheap KDF: the test checks the plumbing (dm-crypt, /dev/mapper/state), not Argon2's cost,
// which under TCG would take many seconds and hundreds of MiB of guest memory.
const luksFormat = "cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /run/vm/key /dev/vda";
const openState = "cryptsetup open --key-file /run/vm/key /dev/vda state && mkdir -p /run/state && mount /dev/mapper/state /run/state";
const closeState = "umount /run/state && cryptsetup close state";
const primaryPublic = "tpm2_createprimary -Q -C o -G ecc -c /tmp/p.ctx && tpm2_readpublic -Q -c /tmp/p.ctx -o /tmp/p.pub && sha256sum < /tmp/p.pub";
const nvIndex = "0x1500016";

describe.skipIf(reason !== undefined)(`vm harness${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let cluster: VmCluster;
  let vm1: Vm;
  let vm2: Vm;
  let stateWritten = false;
  // The never-ready VM boots beside the others; its boot timeout runs out while they are tested.
  let hang: Promise<{ err: unknown; ms: number }>;

  beforeAll(async () => {
    cluster = await VmCluster.create();
    const { kernel, accel, initrdBuilt, setupMs } = cluster.info;
    console.info(`vm harness: kernel ${kernel.version} (${kernel.why}); accel ${accel.name} (${accel.why}); initramfs ${initrdBuilt ? "built" : "cached"}; setup ${setupMs} ms`);
    const both = cluster.startAll([{ name: "vm1" }, { name: "vm2", modules: ["wireguard"] }]);
    const hangStart = Date.now();
    hang = cluster
      .start({ name: "hang", agent: "#!/bin/bash\necho 'am-test: this agent never gets ready'\nexec sleep 1000\n", bootTimeoutMs: 25_000 })
      .then((vm) => ({ err: vm, ms: Date.now() - hangStart }), (err: unknown) => ({ err, ms: Date.now() - hangStart }));
    [vm1, vm2] = await both;
    for (const vm of [vm1, vm2]) console.info(`vm step: harness ${vm.name} booted ${(vm.boots[0].hostMs / 1000).toFixed(1)} s (guest uptime ${vm.boots[0].guestUptimeS} s)`);
  }, 300_000);

  afterAll(async () => {
    await cluster?.destroy();
    console.info(`vm file: harness ${((Date.now() - fileStart) / 1000).toFixed(1)} s`);
  }, 60_000);

  it("each guest has a fresh vTPM at /dev/tpmrm0", async () => {
    for (const out of await Promise.all([vm1, vm2].map((vm) => vm.run("ls /dev/tpmrm0 && tpm2_pcrread sha256:11")))) {
      expect(out).toContain("/dev/tpmrm0");
      expect(out).toMatch(/11\s*:\s*0x0{64}/);
    }
    // Two TPMs, two seeds: the same template yields different primary keys.
    const [p1, p2] = await Promise.all([vm1.run(primaryPublic), vm2.run(primaryPublic)]);
    expect(p1).not.toBe(p2);
  }, 120_000);

  it("node and the checkout come from the read-only program image (/dev/vdb); /dev/vda is the state disk", async () => {
    expect((await vm1.run("cat /sys/block/vda/serial; echo; cat /sys/block/vdb/serial")).split("\n").slice(0, 2)).toEqual(["amstate", "amimg"]);
    for (const path of [`${repoRoot}/dist`, `${repoRoot}/node_modules/`, "$(command -v node)"]) {
      expect(await vm1.run(`findmnt -n -o SOURCE,FSTYPE,OPTIONS --target ${path}`), path).toMatch(/vdb\S*\s+ext4\s+ro[,\s]/);
    }
    expect((await vm1.exec(`touch ${repoRoot}/dist/am-write-test`)).exitCode).not.toBe(0);
  }, 60_000);

  it("creates a kernel WireGuard device (module autoloaded through the guest's modprobe)", async () => {
    const out = await vm1.run("ip link add wgtest type wireguard && ip -d link show wgtest && grep -w ^wireguard /proc/modules && ip link del wgtest");
    expect(out).toMatch(/wireguard/);
    await vm2.run("grep -qw ^wireguard /proc/modules"); // loaded at boot (VmOptions.modules)
  }, 60_000);

  it("guests reach each other and the admin namespace over the bridge", async () => {
    await vm1.run(`ping -c 1 -W 5 ${vm2.ip}`);
    await vm2.run(`ping -c 1 -W 5 ${vm1.ip} && ping -c 1 -W 5 ${cluster.network.adminIp}`);
    for (const vm of [vm1, vm2]) await cluster.admin("ping", ["-c", "1", "-W", "5", vm.ip]);
    expect((await vm1.run("ip -4 -o address show eth0")).trim()).toContain(`${vm1.ip}/24`);
  }, 60_000);

  it("formats /dev/vda as LUKS2, maps it as state and mounts a file system", async () => {
    writeFileSync(join(vm1.shareDir, "key"), Buffer.alloc(32, 7));
    await vm1.run(`${luksFormat} && ${openState.replace("mount ", "mkfs.ext4 -q /dev/mapper/state && mount ")}`, { timeoutMs: 120_000 });
    await vm1.run(`echo persisted > /run/state/marker && ${closeState}`);
    stateWritten = true;
  }, 180_000);

  it("a reboot keeps the vTPM state (same primary key, NV index) and the disk", async () => {
    expect(stateWritten, "needs the LUKS test's disk").toBe(true);
    const before = await vm1.run(primaryPublic);
    await vm1.run(`tpm2_nvdefine -Q ${nvIndex} -C o -s 8 -a "ownerread|ownerwrite" && printf kept-nv! | tpm2_nvwrite -Q ${nvIndex} -C o -i -`);
    const boot = await vm1.reboot();
    console.info(`vm step: harness vm1 rebooted ${(boot.hostMs / 1000).toFixed(1)} s (guest uptime ${boot.guestUptimeS} s)`);
    expect(vm1.boots).toHaveLength(2);
    expect(await vm1.run(primaryPublic)).toBe(before);
    expect(await vm1.run(`tpm2_nvread -C o -s 8 ${nvIndex}`)).toBe("kept-nv!");
    expect(await vm1.run(`${openState} && cat /run/state/marker && ${closeState}`)).toBe("persisted\n");
    // tmpfs state does not survive: /var/lib is empty again.
    expect(await vm1.run("ls -A /var/lib")).toBe("");
  }, 240_000);

  it("a spawned guest process is reachable from the admin namespace", async () => {
    const p = await vm2.spawn("listener", `node -e "require('node:net').createServer((s) => s.end()).listen(8080)"`);
    await cluster.network.waitForPort(vm2.ip, 8080, 60_000, () => p.log());
    await p.kill();
  }, 120_000);

  it("a guest command past its timeout rejects with the serial tail", async () => {
    const err = await vm2.exec("echo started; sleep 600", { timeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmError);
    expect((err as VmError).kind).toBe("timeout");
    expect((err as VmError).message).toMatch(/timed out after 2000 ms[^]*started[^]*serial console[^]*AM-READY/);
    await vm2.run("true"); // the agent is still serving
  }, 60_000);

  it("a VM whose guest never becomes ready times out with the serial tail", async () => {
    const { err, ms } = await hang;
    expect(err).toBeInstanceOf(VmError);
    expect((err as VmError).kind).toBe("timeout");
    // It boots (console output, CPU time), then sits idle: 25 s without progress fail it.
    expect((err as VmError).message).toMatch(/no progress for 25000 ms waiting for hang to boot[^]*serial console[^]*am-init: stage 1[^]*this agent never gets ready/);
    expect(ms).toBeLessThan(100_000);
    expect(cluster.vms.find((v) => v.name === "hang")?.running).toBe(false);
  }, 120_000);

  it("a bogus kernel fails at once with QEMU's error", async () => {
    const bogus = join(cluster.workDir, "bogus-vmlinuz");
    writeFileSync(bogus, Buffer.alloc(4096, 0x5a));
    const err = await cluster.start({ name: "bogus", kernel: bogus, bootTimeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmError);
    expect((err as VmError).kind).toBe("exited");
    expect((err as VmError).message).toMatch(/QEMU exited/);
  }, 60_000);
});
