import { describe, expect, it, vi } from "vitest";
import { formatTable, localmeshUsage, main } from "../../src/localmesh/main.js";
import { debianPackageOf, localMeshTools } from "../../src/localmesh/requirements.js";

describe("localmesh CLI", () => {
  it("formatTable aligns role, public IP, VPN IP, RTT and namespace", () => {
    const out = formatTable([
      { role: "coordinator", label: "coordinator", netns: "am-1-coordinator", publicIP: "198.18.0.3", vpnIP: "10.118.0.1", rttMs: 0.5 },
      { role: "node", label: "node1", netns: "am-1-node1", publicIP: "198.18.0.4", vpnIP: "10.118.0.12", rttMs: 12.25 },
      { role: "admin", label: "admin", netns: "am-1-admin", publicIP: "198.18.0.2", vpnIP: "10.118.0.11", rttMs: undefined },
    ]);
    expect(out.split("\n")).toEqual([
      "ROLE         PUBLIC IP   VPN IP       PING (VPN)  NAMESPACE",
      "coordinator  198.18.0.3  10.118.0.1   0.500 ms    am-1-coordinator",
      "node         198.18.0.4  10.118.0.12  12.250 ms   am-1-node1",
      "admin        198.18.0.2  10.118.0.11  -           am-1-admin",
    ]);
  });

  const usageCases = [
    { name: "--nodes 0", argv: ["--nodes", "0"], want: /--nodes: a number from 1 to 50/ },
    { name: "--nodes x", argv: ["--nodes", "x"], want: /--nodes: a number from 1 to 50/ },
    { name: "unknown flag", argv: ["--bogus"], want: /Unknown option '--bogus'/ },
    { name: "positional", argv: ["up"], want: /unexpected argument "up"/ },
  ];
  for (const tc of usageCases) {
    it(`usage error: ${tc.name} exits 2 with one line`, async () => {
      const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
      try {
        expect(await main(tc.argv)).toBe(2);
        expect(err.mock.calls).toHaveLength(1);
        expect(String(err.mock.calls[0][0])).toMatch(tc.want);
      } finally {
        err.mockRestore();
      }
    });
  }

  it("--help names every Debian package it needs", () => {
    for (const t of localMeshTools) expect(localmeshUsage).toContain(debianPackageOf[t]);
  });
});
