import { join } from "node:path";
import type { Logger } from "../core/logger.js";
import type { VPN } from "../core/vpn.js";
import { openWireGuardVPN } from "../wireguard/vpn.js";
import type { MeshdConfig } from "./flags.js";

/** ManagedVPN is a VPN that meshd closes at shutdown. */
export type ManagedVPN = VPN & { close(): Promise<void> };

/**
 * openVPN opens the WireGuard device meshd was told to use (--vpn, --wg-interface, --wg-port). The
 * private key lives in the state dir (wg.key, mode 0600), so a restarted peer keeps its identity.
 */
export function openVPN(config: MeshdConfig, logger: Logger): Promise<ManagedVPN> {
  return openWireGuardVPN({
    interfaceName: config.wgInterface,
    listenPort: config.wgPort,
    privateKeyFile: join(config.stateDir, "wg.key"),
    backend: config.vpn,
    logger,
  });
}
