import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runActivate } from "../../src/cli/activate.js";
import { readAdminKey } from "../../src/cli/admin-key.js";
import { main } from "../../src/cli/meshctl.js";
import { deriveOwnerID } from "../../src/core/keys.js";
import { activateAdditionalNodes } from "../../src/pubapi/admin.js";
import { PeerState } from "../../src/core/state.js";
import { until } from "../helpers/wait.js";
import { TestMesh } from "../helpers/mesh.js";

const masterSecret = Buffer.from("0123456789abcdef0123456789abcdef");


describe("activation chain in one process", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("activates 1 Coordinator + 3 Nodes, routes node1→node2 only, adds a 4th node and converges", async () => {
    mesh = new TestMesh({ withDisks: true });
    const coord = await mesh.startPeer("coord");
    const nodes = await Promise.all([1, 2, 3].map((i) => mesh.startPeer(`node${i}`)));
    const out = await mkdtemp(join(tmpdir(), "am-admin-"));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    // The same code path as `meshctl activate`, after flag parsing.
    const code = await runActivate(
      { coordinator: coord.endpoint, nodes: nodes.map((n) => n.endpoint), coordinators: [], masterSecret, outDir: out, credentials: mesh.credentials(true) },
      io,
    );
    expect(code, lines.join("\n")).toBe(0);
    expect(lines.some((l) => l.includes("activated Node"))).toBe(true);
    const admin = JSON.parse(await readFile(join(out, "admin.json"), "utf8"));
    expect(admin.ownerId).toBe(deriveOwnerID(masterSecret).toString("hex"));
    expect(admin.clusterId).toMatch(/^[0-9a-f]{64}$/);
    expect(admin.adminVPNIP).toBe("10.118.0.11");
    expect(admin.coordinatorVPNPubKey).toBe(coord.vpn.pubKey);
    const conf = await readFile(join(out, "wg0.conf"), "utf8");
    expect((await stat(join(out, "wg0.conf"))).mode & 0o777).toBe(0o600);
    expect(conf).toMatch(/^\[Interface\]\nPrivateKey = [A-Za-z0-9+/]{43}=\nAddress = 10\.118\.0\.11\/16/);
    expect(conf.match(/\[Peer\]/g)).toHaveLength(4);
    expect(conf).toContain(`AllowedIPs = 10.118.0.1/32\nEndpoint = 127.0.0.1:${coord.vpn.port}`);
    // The admin's private key never left this process: the Coordinator knows only the public key.
    const adminPeer = (await coord.peer.getUpdate(-1)).peers!.find((p) => p.role === "admin")!;
    const priv = /PrivateKey = (\S+)/.exec(conf)![1];
    expect(Buffer.from(nacl.scalarMult.base(Buffer.from(priv, "base64"))).toString("base64")).toBe(adminPeer.vpnPubKey);
    expect(mesh.logs.join("\n")).not.toContain(priv);
    // The admin signing key sits beside admin.json, 0600, and admin.json names its public key.
    expect((await stat(join(out, "admin.key"))).mode & 0o777).toBe(0o600);
    const adminSigner = await readAdminKey(out);
    expect(admin.adminPubKey).toBe(adminSigner.publicKey.toString("base64"));
    await rm(out, { recursive: true, force: true });
    expect(coord.peer.state).toBe(PeerState.ActivatingNodes);
    for (const n of nodes) expect(n.peer.state).toBe(PeerState.IsNode);
    const ips = nodes.map((n) => n.vpn.vpnIP);
    expect(new Set(ips).size).toBe(3);

    await until("nodes see each other", () => nodes.every((n) => n.vpn.peers.length === 4));
    expect(mesh.net.send(nodes[0].vpn, nodes[1].vpn.vpnIP!, "hello")).toBe(true);
    expect(nodes[1].vpn.inbox).toEqual([{ fromVPNIP: nodes[0].vpn.vpnIP, payload: "hello" }]);
    expect(nodes[2].vpn.inbox).toEqual([]);

    const node4 = await mesh.startPeer("node4");
    const res = await activateAdditionalNodes(coord.endpoint, mesh.credentials(false), adminSigner, [node4.endpoint], () => {});
    expect(res.failed).toEqual([]);
    expect(res.activated).toHaveLength(1);
    const version = (await coord.peer.getUpdate(-1)).resourceVersion;
    await until("all peers converge", () => [...nodes, node4].every((n) => n.vpn.peers.length === 5));
    for (const n of [...nodes, node4]) expect(n.vpn.peers).toHaveLength(5);
    expect(mesh.logs.join("\n")).not.toContain(masterSecret.toString());
    expect(mesh.logs.join("\n")).not.toContain(masterSecret.toString("base64"));

    // meshctl peers, against the Coordinator's vpnapi (here on loopback instead of through the VPN).
    const rows: string[] = [];
    const code2 = await main(["peers", "--vpn-endpoint", mesh.vpnapi.get("10.118.0.1")!], { out: (l) => rows.push(l), err: (l) => rows.push(l) });
    expect(code2, rows.join("\n")).toBe(0);
    expect(rows[0]).toBe(`resource version ${version}, 6 peer(s)`);
    expect(rows.filter((l) => /^node\s+10\.118\.0\.\d+\s+127\.0\.0\.1:\d+/.test(l))).toHaveLength(4);
    expect(rows.some((l) => /^node .*s ago$/.test(l))).toBe(true);
  });
});
