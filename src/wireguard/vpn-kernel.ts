import { canonicalCIDR, canonicalEndpoint } from "./addr.js";
import type { PeerConfig, PeerDiff } from "./diff.js";
import { WireGuardError } from "./errors.js";
import { CommandError } from "./exec.js";
import { checkKey, encodeKey, publicKeyBytes } from "./keys.js";
import { diffToPeerChanges, type DevicePeer, type DeviceState } from "./uapi.js";
import { WireGuardVPN } from "./vpn-device.js";

/**
 * KernelVPN drives a kernel WireGuard link (`ip link add <if> type wireguard`) with wg(8). Secrets
 * only travel on stdin: the private key through `wg set <if> private-key /proc/self/fd/0`. A peer
 * change is one `wg set <if> peer … remove peer … allowed-ips …` naming only the changed peers (one
 * batched netlink change; public keys only on the command line), with an endpoint only where the
 * change sets one, so endpoints learned by roaming survive. An existing kernel WireGuard link of that name is adopted (a restarted meshd);
 * close() deletes the link only if this object created it. See WireGuardVPN for the contract.
 */
export class KernelVPN extends WireGuardVPN {
  private created = false;

  protected override async createDevice(privateKey: Uint8Array): Promise<void> {
    const iface = this.interfaceName;
    try {
      await this.run("create interface", "ip", ["link", "add", iface, "type", "wireguard"]);
      this.created = true;
    } catch (err) {
      const out = commandOutput(err);
      if (/unknown device type|not supported/i.test(out)) {
        throw new WireGuardError("unsupported", `create interface ${iface}: kernel WireGuard is not available (no wireguard module): use the userspace backend`, { cause: err });
      }
      if (!/file exists/i.test(out)) throw err;
      const shown = await this.run("inspect interface", "ip", ["-d", "-o", "link", "show", "dev", iface]);
      if (!/\bwireguard\b/.test(shown.stdout)) throw new WireGuardError("not-wireguard", `create interface ${iface}: a link named ${iface} exists and is not a kernel WireGuard device`);
      // Adopt only our own device (an earlier run of ours left it): one with another key is not ours.
      const theirs = (await this.run("inspect interface", "wg", ["show", iface, "public-key"])).stdout.trim();
      if (theirs !== "(none)" && theirs !== encodeKey(publicKeyBytes(privateKey))) {
        throw new WireGuardError("busy", `create interface ${iface}: a WireGuard link named ${iface} exists with another key; it is not this peer's (pick another --wg-interface)`);
      }
      this.log.info("adopting existing kernel WireGuard link", { interface: iface });
    }
    const args = ["set", iface, "private-key", "/proc/self/fd/0", "listen-port", String(this.options.listenPort)];
    await this.run("set private key", "wg", args, { input: `${encodeKey(privateKey)}\n` });
  }

  protected override async readDevice(): Promise<DeviceState> {
    return parseWgShowDump((await this.run("read device", "wg", ["show", this.interfaceName, "dump"])).stdout);
  }

  protected override async writePeers(diff: PeerDiff, _wanted: readonly PeerConfig[]): Promise<void> {
    await this.run("update peers", "wg", ["set", this.interfaceName, ...wgSetPeerArgs(diff)]);
  }

  protected override async destroyDevice(): Promise<void> {
    if (!this.created) return;
    this.created = false;
    await this.run("delete interface", "ip", ["link", "del", this.interfaceName]);
  }
}

/**
 * wgSetPeerArgs renders a PeerDiff as `wg set` peer arguments: removals (and rotated-out keys)
 * first, then each new or changed peer in full (allowed-ips replaces the peer's list), with its
 * endpoint only when the diff sets one. Values are canonical already (diff.ts validated them).
 */
export function wgSetPeerArgs(diff: PeerDiff): string[] {
  return diffToPeerChanges(diff).flatMap((c) => {
    if (c.remove) return ["peer", c.pubKey, "remove"];
    const ka = c.persistentKeepaliveSec ?? 0;
    return [
      "peer",
      c.pubKey,
      ...(c.endpoint !== undefined ? ["endpoint", c.endpoint] : []),
      "persistent-keepalive",
      ka === 0 ? "off" : String(ka),
      "allowed-ips",
      (c.allowedIPs ?? []).join(","),
    ];
  });
}

/**
 * parseWgShowDump parses `wg show <if> dump`: a device line (private key, public key, listen port,
 * fwmark) then one tab-separated line per peer (public key, preshared key, endpoint, allowed IPs,
 * latest handshake, rx, tx, persistent keepalive). The private key is dropped. Throws
 * WireGuardError("internal") on malformed input.
 */
export function parseWgShowDump(text: string): DeviceState {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const head = lines.shift()?.split("\t");
  if (!head || head.length < 4) throw new WireGuardError("internal", "wg show dump: missing device line");
  const state: DeviceState = { listenPort: num(head[2]), fwmark: head[3] === "off" ? 0 : num(head[3]), peers: [] };
  if (head[1] !== "(none)") state.publicKey = checkKey(head[1], "wg show dump: public key");
  for (const line of lines) {
    const f = line.split("\t");
    if (f.length < 8) throw new WireGuardError("internal", `wg show dump: malformed peer line with ${f.length} fields`);
    const peer: DevicePeer = {
      pubKey: checkKey(f[0], "wg show dump: peer public key"),
      allowedIPs: f[3] === "(none)" ? [] : f[3].split(",").map((c) => canonicalCIDR(c, "wg show dump: allowed ip")),
      persistentKeepaliveSec: f[7] === "off" ? 0 : num(f[7]),
      lastHandshakeSec: num(f[4]),
      rxBytes: num(f[5]),
      txBytes: num(f[6]),
    };
    if (f[2] !== "(none)") peer.endpoint = canonicalEndpoint(f[2], "wg show dump: endpoint");
    state.peers.push(peer);
  }
  return state;
}

function commandOutput(err: unknown): string {
  const cause = err instanceof CommandError ? err : (err as { cause?: unknown } | undefined)?.cause;
  return cause instanceof CommandError ? cause.output : "";
}

function num(v: string): number {
  if (!/^\d+$/.test(v)) throw new WireGuardError("internal", `wg show dump: not a number: ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}
