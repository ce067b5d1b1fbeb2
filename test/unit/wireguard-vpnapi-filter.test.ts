import { describe, expect, it } from "vitest";
import { CommandError, type CommandRunner } from "../../src/wireguard/exec.js";
import { checkNftAvailable, VPNAPIFilter, vpnapiFilterRuleset, vpnapiFilterTable } from "../../src/wireguard/vpnapi-filter.js";

describe("vpnapi filter (nftables ruleset)", () => {
  const names = [
    { iface: "wg0", table: "meshd_vpnapi_wg0" },
    { iface: "amwg1a2b3c4d", table: "meshd_vpnapi_amwg1a2b3c4d" },
    { iface: "wg.a-b", table: "meshd_vpnapi_wg.a-b" },
    { iface: "a_b", table: "meshd_vpnapi__615f62" },
    { iface: "wg=+", table: "meshd_vpnapi__77673d2b" },
  ];
  for (const tc of names) it(`table of ${tc.iface} is ${tc.table}`, () => expect(vpnapiFilterTable(tc.iface)).toBe(tc.table));

  it("the ruleset replaces a stale table atomically, accepts WireGuard and lo, and drops the rest", () => {
    expect(vpnapiFilterRuleset({ wgInterface: "wg0", vpnIP: "10.118.0.1", port: 9027 })).toBe(
      [
        "table inet meshd_vpnapi_wg0",
        "delete table inet meshd_vpnapi_wg0",
        "table inet meshd_vpnapi_wg0 {",
        "  chain input {",
        "    type filter hook input priority -10; policy accept;",
        '    ip daddr 10.118.0.1 tcp dport 9027 iifname "wg0" accept',
        '    ip daddr 10.118.0.1 tcp dport 9027 iifname "lo" accept',
        "    ip daddr 10.118.0.1 tcp dport 9027 drop",
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  it("a metrics filter (meshd --metrics-listen vpn:PORT) has a table of its own beside the vpnapi's", () => {
    expect(vpnapiFilterTable("wg0", "metrics")).toBe("meshd_metrics_wg0");
    const r = vpnapiFilterRuleset({ wgInterface: "wg0", vpnIP: "10.118.0.12", port: 9101, service: "metrics" });
    expect(r).toContain("table inet meshd_metrics_wg0 {");
    expect(r).toContain('    ip daddr 10.118.0.12 tcp dport 9101 iifname "wg0" accept');
    expect(r).toContain("    ip daddr 10.118.0.12 tcp dport 9101 drop");
    expect(r).not.toContain("meshd_vpnapi_");
  });

  const bad = [
    { name: "an interface name with a quote", o: { wgInterface: 'wg"0', vpnIP: "10.118.0.1", port: 9027 } },
    { name: "a VPN IP that is not IPv4", o: { wgInterface: "wg0", vpnIP: "10.118.0.1; drop", port: 9027 } },
    { name: "port 0", o: { wgInterface: "wg0", vpnIP: "10.118.0.1", port: 0 } },
  ];
  for (const tc of bad) it(`refuses ${tc.name}`, () => expect(() => vpnapiFilterRuleset(tc.o)).toThrow(/vpnapi filter/));

  it("says which package to install when nft is missing", () => {
    expect(() => checkNftAvailable("/nonexistent")).toThrow(/nft not found on PATH: install the nftables package/);
  });

  it("install pipes the script to `nft -f -` inside the namespace; remove tolerates a table already gone", async () => {
    const calls: Array<{ file: string; args: readonly string[]; input?: string }> = [];
    const run: CommandRunner = async (file, args, options) => {
      calls.push({ file, args, ...(options?.input !== undefined ? { input: options.input } : {}) });
      if (args.includes("delete")) throw new CommandError(`nft ${args.join(" ")}`, 1, "Error: No such file or directory", false);
      return { stdout: "", stderr: "" };
    };
    const f = await VPNAPIFilter.install({ wgInterface: "wg0", vpnIP: "10.118.0.1", port: 9027, netns: "ns1", run });
    expect(calls[0]).toMatchObject({ file: "ip", args: ["netns", "exec", "ns1", "nft", "-f", "-"] });
    expect(calls[0].input).toContain("drop");
    await f.remove();
    await f.remove();
    expect(calls.map((c) => c.args.slice(3).join(" "))).toEqual(["nft -f -", "nft delete table inet meshd_vpnapi_wg0"]);
  });

  it("names the cause when nft is not permitted", async () => {
    const run: CommandRunner = async (file, args) => {
      throw new CommandError(`${file} ${args.join(" ")}`, 1, "Error: Could not process rule: Operation not permitted", false);
    };
    await expect(VPNAPIFilter.install({ wgInterface: "wg0", vpnIP: "10.118.0.1", port: 9027, run })).rejects.toMatchObject({ code: "permission-denied" });
  });
});
