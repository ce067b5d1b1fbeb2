import { canonicalCIDR, canonicalEndpoint } from "./addr.js";
import { renderWgConfig } from "./config.js";
import type { PeerConfig, PeerDiff } from "./diff.js";
import { WireGuardError } from "./errors.js";
import { CommandError } from "./exec.js";
import { checkKey, encodeKey } from "./keys.js";
import type { DevicePeer, DeviceState } from "./uapi.js";
import { WireGuardVPN } from "./vpn-device.js";

/**
 * KernelVPN drives a kernel WireGuard link (`ip link add <if> type wireguard`) with wg(8). Secrets
 * only travel on stdin: the private key through `wg set <if> private-key /proc/self/fd/0`, peers through
 * `wg syncconf <if> /proc/self/fd/0` (one batched netlink change that removes what is not wanted and
 * sets the rest). An existing kernel WireGuard link of that name is adopted (a restarted meshd);
 * close() deletes the link only if this object created it. See WireGuardVPN for the contract.
 */
export class KernelVPN extends WireGuardVPN {
  private created = false;
  /**
   * privateKey is kept for writePeers: `wg syncconf` treats its input as the whole configuration,
   * so a config without PrivateKey and ListenPort would clear the key and pick a random port.
   */
  private privateKey: Uint8Array | undefined;

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
      this.log.info("adopting existing kernel WireGuard link", { interface: iface });
    }
    this.privateKey = Uint8Array.from(privateKey); // a copy: the caller wipes its buffer after start
    const args = ["set", iface, "private-key", "/proc/self/fd/0", "listen-port", String(this.options.listenPort)];
    await this.run("set private key", "wg", args, { input: `${encodeKey(privateKey)}\n` });
  }

  protected override async readDevice(): Promise<DeviceState> {
    return parseWgShowDump((await this.run("read device", "wg", ["show", this.interfaceName, "dump"])).stdout);
  }

  protected override async writePeers(_diff: PeerDiff, wanted: readonly PeerConfig[]): Promise<void> {
    if (!this.privateKey) throw new WireGuardError("inconsistent", `update peers ${this.interfaceName}: the device was not started`);
    const config = renderWgConfig({ privKey: encodeKey(this.privateKey), listenPort: this.options.listenPort, peers: wanted });
    await this.run("update peers", "wg", ["syncconf", this.interfaceName, "/proc/self/fd/0"], { input: config });
  }

  protected override async destroyDevice(): Promise<void> {
    if (!this.created) return;
    this.created = false;
    await this.run("delete interface", "ip", ["link", "del", this.interfaceName]);
  }
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
  const state: DeviceState = { listenPort: num(head[2]!), fwmark: head[3] === "off" ? 0 : num(head[3]!), peers: [] };
  if (head[1] !== "(none)") state.publicKey = checkKey(head[1], "wg show dump: public key");
  for (const line of lines) {
    const f = line.split("\t");
    if (f.length < 8) throw new WireGuardError("internal", `wg show dump: malformed peer line with ${f.length} fields`);
    const peer: DevicePeer = {
      pubKey: checkKey(f[0], "wg show dump: peer public key"),
      allowedIPs: f[3] === "(none)" ? [] : f[3]!.split(",").map((c) => canonicalCIDR(c, "wg show dump: allowed ip")),
      persistentKeepaliveSec: f[7] === "off" ? 0 : num(f[7]!),
      lastHandshakeSec: num(f[4]!),
      rxBytes: num(f[5]!),
      txBytes: num(f[6]!),
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
