import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserspaceVPN } from "../../src/wireguard/vpn-userspace.js";
import { VPNAPIFilter, vpnapiFilterTable } from "../../src/wireguard/vpnapi-filter.js";
import { findExecutable } from "../../src/wireguard/exec.js";
import { canRunE2E, NetnsHarness, type NetnsNode } from "../helpers/netns.js";

const reason = canRunE2E() ?? (findExecutable("nft") ? undefined : "nft missing: install the nftables package");
const vpnapiPort = 9027;
const coordVPNIP = "10.118.0.1";

/**
 * Focused e2e of the vpnapi filter (the module meshd installs, vpnapi-filter.ts): a Coordinator
 * namespace with a real wireguard-go device and a TCP listener on its VPN IP's vpnapi port, a Node
 * namespace reaching it through the tunnel, and a "host" namespace on the same public network that
 * routes the VPN IP via the Coordinator's public address, as a hostile host or neighbour would.
 */
describe.skipIf(reason !== undefined)(`vpnapi reachable only through WireGuard (root, namespaces, nft)${reason ? ` — skipped: ${reason}` : ""}`, () => {
  let net: NetnsHarness;
  let dir: string;
  let coord: NetnsNode;
  let node: NetnsNode;
  let host: NetnsNode;
  let coordVPN: UserspaceVPN;
  let nodeVPN: UserspaceVPN;
  const filters: VPNAPIFilter[] = [];

  /** reaches says whether a TCP connection from namespace `ns` to the vpnapi port gets the listener's greeting. */
  async function reaches(ns: string): Promise<boolean> {
    const r = await net.exec(ns, "timeout", ["2", "bash", "--norc", "-c", `exec 3<>/dev/tcp/${coordVPNIP}/${vpnapiPort} && head -c 6 <&3`], { reject: false });
    return r.exitCode === 0 && r.stdout === "vpnapi";
  }

  async function tables(ns: string): Promise<string[]> {
    const r = await net.exec(ns, "nft", ["list", "tables"]);
    return r.stdout.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("table inet meshd_vpnapi_"));
  }

  async function install(wgInterface: string): Promise<VPNAPIFilter> {
    const f = await VPNAPIFilter.install({ wgInterface, vpnIP: coordVPNIP, port: vpnapiPort, netns: coord.name });
    filters.push(f);
    return f;
  }

  beforeAll(async () => {
    net = NetnsHarness.create();
    dir = await mkdtemp(join(tmpdir(), "am-filter-e2e-"));
    net.attachDir(dir);
    [coord, node, host] = [net.addNode("coord"), net.addNode("node"), net.addNode("host")];
    const open = async (n: NetnsNode): Promise<UserspaceVPN> => {
      const iface = net.interfaceName();
      const vpn = new UserspaceVPN({ interfaceName: iface, privateKeyFile: join(dir, `${iface}.key`), netns: n.name });
      await vpn.start();
      return vpn;
    };
    [coordVPN, nodeVPN] = [await open(coord), await open(node)];
    await coordVPN.setInterfaceIP(coordVPNIP);
    await nodeVPN.setInterfaceIP("10.118.0.11");
    await coordVPN.updatePeers([{ pubKey: await nodeVPN.getPublicKey(), publicIP: node.ip, vpnIP: "10.118.0.11" }]);
    await nodeVPN.updatePeers([{ pubKey: await coordVPN.getPublicKey(), publicIP: coord.ip, vpnIP: coordVPNIP }]);
    // The listener stands in for the vpnapi: bound to the VPN IP only, as meshd binds it.
    const server = `require("node:net").createServer((s) => s.end("vpnapi")).listen(${vpnapiPort}, "${coordVPNIP}", () => console.log("up"))`;
    void net.exec(coord.name, process.execPath, ["-e", server], { timeoutMs: 600_000, reject: false });
    await net.exec(host.name, "ip", ["route", "add", `${coordVPNIP}/32`, "via", coord.ip]);
    let up = false;
    for (let i = 0; i < 100 && !up; i++) up = await reaches(node.name);
    expect(up, "the Node reaches the listener through WireGuard").toBe(true);
  }, 60_000);

  afterAll(async () => {
    for (const f of filters) await f.remove().catch(() => undefined);
    await coordVPN?.close().catch(() => undefined);
    await nodeVPN?.close().catch(() => undefined);
    net?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("without the filter the host reaches the vpnapi from the public side (what the filter must stop)", async () => {
    expect(await tables(coord.name)).toEqual([]);
    expect(await reaches(host.name)).toBe(true);
  });

  it("with the filter the host is dropped while the Node through WireGuard and the Coordinator itself still reach it", async () => {
    const f = await install(coordVPN.interfaceName);
    expect(await tables(coord.name)).toEqual([`table inet ${vpnapiFilterTable(coordVPN.interfaceName)}`]);
    expect(await reaches(host.name)).toBe(false);
    expect(await reaches(node.name)).toBe(true);
    expect(await reaches(coord.name)).toBe(true);
    await f.remove();
    expect(await tables(coord.name)).toEqual([]);
    expect(await reaches(host.name)).toBe(true);
    await f.remove(); // idempotent
  });

  it("a stale table (meshd killed) is replaced at start; a second meshd's table (other interface) is left alone", async () => {
    await install(coordVPN.interfaceName);
    const other = await install("amwgother0");
    const again = await install(coordVPN.interfaceName);
    expect((await tables(coord.name)).sort()).toEqual(
      [`table inet ${vpnapiFilterTable(coordVPN.interfaceName)}`, `table inet ${vpnapiFilterTable("amwgother0")}`].sort(),
    );
    const rules = (await net.exec(coord.name, "nft", ["list", "table", "inet", again.table])).stdout;
    expect(rules.match(/drop/g)).toHaveLength(1);
    expect(await reaches(host.name)).toBe(false);
    await other.remove();
    expect(await tables(coord.name)).toEqual([`table inet ${again.table}`]);
    expect(await reaches(host.name)).toBe(false);
    await again.remove();
    expect(await reaches(host.name)).toBe(true);
  });
});
