import { formatEndpoint, parseEndpoint } from "../core/validate.js";
import { VPNAPIClient, vpnapiPort } from "../vpnapi/client.js";
import { UsageError, type Command } from "./command.js";

/** peers is `meshctl peers`: the peer set as the Coordinator serves it inside the VPN. */
export const peers: Command = {
  name: "peers",
  summary: "list the mesh's peers (from inside the VPN)",
  usage: `Usage: meshctl peers [--vpn-endpoint 10.118.0.1:9027] [--json]

Asks a Coordinator's vpnapi (reachable only through the VPN, e.g. after 'wg-quick up ./wg0.conf')
for the current peer set and prints role, VPN IP, public address, WireGuard key and when each peer
last polled for updates.

Options:
  --vpn-endpoint ENDPOINT   the Coordinator's vpnapi (default 10.118.0.1:9027)
  --json                    print JSON`,
  options: { "vpn-endpoint": { type: "string" }, json: { type: "boolean" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const target = formatEndpoint(parseEndpoint(typeof v["vpn-endpoint"] === "string" ? v["vpn-endpoint"] : "10.118.0.1", "--vpn-endpoint", vpnapiPort));
    const client = new VPNAPIClient(target);
    try {
      const res = await client.getPeers();
      if (v.json) {
        io.out(JSON.stringify(res, null, 2));
        return 0;
      }
      io.out(`resource version ${res.resourceVersion}, ${res.peers.length} peer(s)`);
      io.out(`${"ROLE".padEnd(12)}${"VPN IP".padEnd(16)}${"PUBLIC".padEnd(24)}${"WIREGUARD KEY".padEnd(46)}${"APPLIED".padEnd(9)}${"LAG".padEnd(5)}${"ACKED".padEnd(10)}LAST POLL`);
      for (const { peer: p, lastSeenMs, appliedVersion, appliedMs } of res.peers) {
        const pub = p.publicIP ? `${p.publicIP}:${p.pubapiPort}` : "-";
        const ago = (ms: number) => (ms > 0 ? `${Math.round((Date.now() - ms) / 1000)}s ago` : "-");
        // LAG: versions the peer is behind the served one ("-": it never acknowledged one).
        const applied = appliedVersion > 0 ? String(appliedVersion) : "-";
        const lag = appliedVersion > 0 ? String(Math.max(0, res.resourceVersion - appliedVersion)) : "-";
        io.out(`${p.role.padEnd(12)}${p.vpnIP.padEnd(16)}${pub.padEnd(24)}${p.vpnPubKey.padEnd(46)}${applied.padEnd(9)}${lag.padEnd(5)}${ago(appliedMs).padEnd(10)}${ago(lastSeenMs)}`);
      }
      return 0;
    } finally {
      client.close();
    }
  },
};
