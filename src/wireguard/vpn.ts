/**
 * The WireGuard VPN device as meshd uses it: options, backend detection and the factory. The
 * backends (vpn-kernel.ts, vpn-userspace.ts) share WireGuardVPN (vpn-device.ts), which satisfies the
 * core's VPN interface structurally; this directory imports nothing from the rest of the project
 * (the peer and logger shapes below duplicate the core's tiny types, checked by a type test).
 */
import { WireGuardError } from "./errors.js";
import { CommandError, execaRunner, inNetns, type CommandRunner } from "./exec.js";
import type { WireGuardVPN } from "./vpn-device.js";
export { defaultListenPort, defaultPersistentKeepaliveSec } from "./vpn-device.js";
import { KernelVPN } from "./vpn-kernel.js";
import { UserspaceVPN, type UserspaceVPNOptions } from "./vpn-userspace.js";

/** WireGuardPeerSpec is the core's VPNPeer (src/core/vpn.ts), duplicated to keep this layer standalone. */
export interface WireGuardPeerSpec {
  /** pubKey is the peer's public key, base64. */
  pubKey: string;
  /** publicIP is where the peer's WireGuard port is reached; "" means no endpoint (the peer dials in). */
  publicIP: string;
  /** vpnIP is the peer's VPN address, its only allowed IP. */
  vpnIP: string;
  /** port is the peer's WireGuard port; undefined means 51820. */
  port?: number;
}

/** WireGuardLogger is the subset of the core's Logger this layer uses; it never receives keys. */
export interface WireGuardLogger {
  debug(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
  info(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
  warn(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
  error(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
}

/** WireGuardOptions configures a device backend; the constructor checks them and fills defaults. */
export interface WireGuardOptions {
  /** interfaceName is the device name (1-15 characters of letters, digits and _=+.-). Required. */
  interfaceName: string;
  /**
   * privateKeyFile is the key file in the state dir (base64, mode 0600); generated when absent so a
   * restarted peer keeps its identity. Required.
   */
  privateKeyFile: string;
  /** listenPort is the UDP port; undefined means 51820, 0 lets the device pick one. */
  listenPort?: number;
  /** persistentKeepaliveSec applies to every peer; undefined means 25, 0 turns keepalives off. */
  persistentKeepaliveSec?: number;
  /** vpnPrefixLength is the prefix of the interface address; undefined means 16 (10.118.0.0/16). */
  vpnPrefixLength?: number;
  /** netns runs the device in this named network namespace (`ip netns exec`); undefined: the current one. */
  netns?: string;
  /** logger receives structured lines; undefined drops them. */
  logger?: WireGuardLogger;
  /** commandTimeoutMs bounds every `ip`/`wg` command and UAPI exchange; undefined means 10000. */
  commandTimeoutMs?: number;
  /** runner runs `ip`/`wg` commands; undefined means execa. Tests pass a fake. */
  runner?: CommandRunner;
}

/** WireGuardBackend names a device implementation; "auto" means detectBackend. */
export type WireGuardBackend = "kernel" | "userspace" | "auto";

/**
 * detectBackend answers "kernel" when `ip link add <iface> type wireguard` works (the probe link is
 * deleted again, or an existing kernel WireGuard link of that name is found), else "userspace".
 * It throws WireGuardError("permission-denied") when not root, and ("not-wireguard") when a link of
 * that name exists and is neither a kernel WireGuard link nor a TUN device.
 */
export async function detectBackend(options: Pick<WireGuardOptions, "interfaceName" | "netns" | "runner">): Promise<"kernel" | "userspace"> {
  const runner = options.runner ?? execaRunner;
  const iface = options.interfaceName;
  const run = (args: string[]) => runner(...inNetns(options.netns, "ip", args));
  try {
    await run(["link", "add", iface, "type", "wireguard"]);
    await run(["link", "del", iface]);
    return "kernel";
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    if (err.notFound) throw new WireGuardError("tool-missing", "detect WireGuard backend: ip not found: install the iproute2 package", { cause: err });
    if (/operation not permitted/i.test(err.output)) {
      throw new WireGuardError("permission-denied", `detect WireGuard backend: creating ${iface} needs root (CAP_NET_ADMIN): ${err.output}`, { cause: err });
    }
    if (!/file exists/i.test(err.output)) return "userspace"; // "Unknown device type": no kernel module
    const shown = await run(["-d", "-o", "link", "show", "dev", iface]);
    if (/\bwireguard\b/.test(shown.stdout)) return "kernel";
    if (/\btun\b/.test(shown.stdout)) return "userspace";
    throw new WireGuardError("not-wireguard", `detect WireGuard backend: interface ${iface} exists and is not a WireGuard device`);
  }
}

/**
 * openWireGuardVPN picks the backend (detectBackend for "auto", the default), creates and starts
 * the device and returns it. The caller owns the result and must close() it.
 */
export async function openWireGuardVPN(options: UserspaceVPNOptions & { backend?: WireGuardBackend }): Promise<WireGuardVPN> {
  const backend = options.backend === undefined || options.backend === "auto" ? await detectBackend(options) : options.backend;
  options.logger?.info("opening WireGuard device", { interface: options.interfaceName, backend });
  const vpn = backend === "kernel" ? new KernelVPN(options) : new UserspaceVPN(options);
  await vpn.start();
  return vpn;
}
