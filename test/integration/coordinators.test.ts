/**
 * Several Coordinators in one process (one shared store): `meshctl activate --coordinators`,
 * `meshctl add-coordinators`, admin commands failing over to a live Coordinator, Nodes following
 * the Coordinators of the peer set, and a fresh peer that refuses ActivateAsAdditionalCoordinator
 * from a caller without proof.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runActivate } from "../../src/cli/activate.js";
import { main } from "../../src/cli/meshctl.js";
import { PeerState } from "../../src/core/state.js";
import { stateDiskKey } from "../../src/core/keys.js";
import type { FakeDisk } from "../helpers/fakes.js";
import { TestMesh } from "../helpers/mesh.js";
import { caught, until } from "../helpers/wait.js";
import { writeFile } from "node:fs/promises";
import { policyToJSON } from "../../src/attestation/policy.js";
import { swtpmPolicy } from "../helpers/swtpm.js";

const masterSecret = Buffer.from("0123456789abcdef0123456789abcdef");

describe("several Coordinators", () => {
  let mesh: TestMesh;
  let out: string;
  afterEach(async () => {
    await mesh?.close();
    if (out) await rm(out, { recursive: true, force: true });
  });

  it("activate --coordinators, add-coordinators, and admin commands through any live Coordinator", async () => {
    mesh = new TestMesh({ withDisks: true, sharedStore: true });
    const [c1, c2, c3, n1, n2] = await Promise.all(["c1", "c2", "c3", "n1", "n2"].map((n) => mesh.startPeer(n)));
    out = await mkdtemp(join(tmpdir(), "am-admin-"));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const code = await runActivate(
      { coordinator: c1.endpoint, nodes: [n1.endpoint], coordinators: [c2.endpoint], masterSecret, outDir: out, credentials: mesh.credentials(true) },
      io,
    );
    expect(code, lines.join("\n")).toBe(0);
    expect(lines.join("\n")).toContain("activated Coordinator");
    expect(c2.peer.state).toBe(PeerState.ActivatingNodes);
    expect(c2.vpn.vpnIP).toBe("10.118.0.2");
    // Its own disk key, derived like every disk key, registered for it.
    const clusterID = Buffer.from(JSON.parse(await readFile(join(out, "admin.json"), "utf8")).clusterId, "hex");
    expect((c2.disk as FakeDisk).passphrase).toEqual(Buffer.from(stateDiskKey(masterSecret, clusterID, await c2.disk!.uuid())));
    const admin = JSON.parse(await readFile(join(out, "admin.json"), "utf8"));
    expect(admin.coordinatorEndpoints).toEqual([c1.endpoint, c2.endpoint]);
    const conf = await readFile(join(out, "wg0.conf"), "utf8");
    expect(conf).toContain("AllowedIPs = 10.118.0.2/32");

    const policy = join(out, "measurements.json");
    await writeFile(policy, JSON.stringify(policyToJSON(swtpmPolicy())));
    lines.length = 0;
    expect(await main(["add-coordinators", "--coordinators", c3.endpoint, "--admin-dir", out, "--measurements", policy], io), lines.join("\n")).toBe(0);
    expect(c3.vpn.vpnIP).toBe("10.118.0.3");
    expect(JSON.parse(await readFile(join(out, "admin.json"), "utf8")).coordinatorEndpoints).toHaveLength(3);
    // Every Coordinator and the Node converge on 3 Coordinators; the Node knows them all.
    for (const p of [c1, c2, c3, n1]) {
      await until(`${p.name} lists 3 Coordinators`, () => ["10.118.0.1", "10.118.0.2", "10.118.0.3"].every((ip) => p.vpn.vpnIP === ip || p.vpn.peers.some((x) => x.vpnIP === ip)));
    }

    // The first Coordinator dies: add-nodes goes through the next one admin.json lists.
    await c1.stopSoftware();
    lines.length = 0;
    expect(await main(["add-nodes", "--nodes", n2.endpoint, "--admin-dir", out, "--measurements", policy], io), lines.join("\n")).toBe(0);
    expect(lines.join("\n")).toMatch(/Coordinator 127\.0\.0\.1:\d+ did not answer/);
    expect(n2.peer.state).toBe(PeerState.IsNode);
    // n1 moves to a live Coordinator and learns n2.
    await until("n1 lists n2", () => n1.vpn.peers.some((x) => x.pubKey === n2.vpn.pubKey), 10_000);
  }, 90_000);

  it("remove-coordinator takes a Coordinator out of every device and admin.json and never releases its disk key; wrong roles are refused", async () => {
    mesh = new TestMesh({ withDisks: true, sharedStore: true });
    const [c1, c2, c3, n1] = await Promise.all(["c1", "c2", "c3", "n1"].map((n) => mesh.startPeer(n)));
    out = await mkdtemp(join(tmpdir(), "am-admin-"));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const code = await runActivate(
      { coordinator: c1.endpoint, nodes: [n1.endpoint], coordinators: [c2.endpoint, c3.endpoint], masterSecret, outDir: out, credentials: mesh.credentials(true) },
      io,
    );
    expect(code, lines.join("\n")).toBe(0);
    const policy = join(out, "measurements.json");
    await writeFile(policy, JSON.stringify(policyToJSON(swtpmPolicy())));
    const admin = (...args: string[]) => {
      lines.length = 0;
      return main([...args, "--admin-dir", out, "--measurements", policy], io);
    };
    const c3IP = c3.vpn.vpnIP!;
    const c3Disk = await c3.disk!.uuid();
    await until("n1 lists c3", () => n1.vpn.peers.some((p) => p.vpnIP === c3IP));

    // Asked first, c3 declines to remove itself; the next Coordinator does it.
    expect(await admin("remove-coordinator", "--coordinator", c3.endpoint, "--vpn-ip", c3IP), lines.join("\n")).toBe(0);
    expect(lines.join("\n")).toMatch(/Coordinator 127\.0\.0\.1:\d+ declined \(.*is this Coordinator/);
    expect(lines.join("\n")).toContain(`removed ${c3IP} (${c3.endpoint})`);
    for (const p of [c1, c2, n1]) await until(`${p.name} drops c3`, () => !p.vpn.peers.some((x) => x.vpnIP === c3IP));
    expect(JSON.parse(await readFile(join(out, "admin.json"), "utf8")).coordinatorEndpoints).toEqual([c1.endpoint, c2.endpoint]);
    // Its disk is retired: no Coordinator hands out that key again.
    expect(String(await caught(c1.peer.requestStateDiskKey(c3Disk)))).toMatch(/not a disk of any activated peer/);

    expect(await admin("remove-coordinator", "--vpn-ip", n1.vpn.vpnIP!)).toBe(1);
    expect(lines.join("\n")).toMatch(/is a node, not a Coordinator \(use remove-node\)/);
    expect(await admin("remove-node", "--vpn-ip", c2.vpn.vpnIP!)).toBe(1);
    expect(lines.join("\n")).toMatch(/is a Coordinator \(use remove-coordinator\)/);
    expect(await admin("remove-coordinator", "--vpn-ip", c3IP)).toBe(1);
    expect(lines.join("\n")).toMatch(/no peer has/);
  }, 90_000);

  it("a fresh peer refuses ActivateAsAdditionalCoordinator from a caller that proves nothing, and stays fresh", async () => {
    mesh = new TestMesh({ attestation: "test" });
    const p = await mesh.startPeer("fresh");
    const err = await p.peer
      .activateAsAdditionalCoordinator(
        { ekm: Buffer.alloc(32), proof: undefined },
        { nodeVPNIP: "10.118.0.2", ownerID: Buffer.alloc(32), clusterID: Buffer.alloc(32), peers: [{ role: "coordinator", publicIP: "127.0.0.1", vpnIP: "10.118.0.1", vpnPubKey: p.vpn.pubKey, wgPort: 1, pubapiPort: 1 }], coordinatorVPNIPs: ["10.118.0.1"], coordinatorEndpoints: ["127.0.0.1:1"], coordinatorAuthPubKey: Buffer.alloc(32, 1) },
        { sendInfo: () => Promise.reject(new Error("must not be reached")), memberStarted: () => Promise.reject(new Error("must not be reached")) },
      )
      .catch((e: unknown) => e as Error);
    expect(String(err)).toMatch(/caller proof: missing/);
    expect(p.peer.state).toBe(PeerState.AcceptingInit);
    expect(p.marker.marks).toBe(0);
  });
});
