import { join } from "node:path";
import type { Logger } from "../shared/logger.js";
import type { VPN, VPNPeer } from "../core/vpn.js";
import type { WireGuardVPN } from "../wireguard/vpn-device.js";
import { openWireGuardVPN } from "../wireguard/vpn.js";
import type { MeshdConfig } from "./flags.js";

/** ManagedVPN is a VPN that meshd closes at shutdown. */
export type ManagedVPN = VPN & { close(): Promise<void> };

/**
 * openVPN returns meshd's WireGuard device (--vpn, --wg-interface, --wg-port). The device opens on
 * first use, not here: its private key lives in the state dir (wg.key, mode 0600), which on a
 * rebooted peer with a state disk exists only once the disk is unlocked. Concurrent first calls
 * share one opening; a failed opening is retried by the next call. `onInterfaceIP` runs after each
 * successful setInterfaceIP (the VPN IP of an activation or a restart), before it returns.
 */
export function openVPN(config: MeshdConfig, logger: Logger, onInterfaceIP?: (vpnIP: string) => Promise<void>): ManagedVPN {
  let device: Promise<WireGuardVPN> | undefined;
  const get = (): Promise<WireGuardVPN> => {
    device ??= openWireGuardVPN({
      interfaceName: config.wgInterface,
      listenPort: config.wgPort,
      privateKeyFile: join(config.stateDir, "wg.key"),
      backend: config.vpn,
      logger,
    }).catch((err: unknown) => {
      device = undefined;
      throw err;
    });
    return device;
  };
  return {
    getPublicKey: async () => (await get()).getPublicKey(),
    setInterfaceIP: async (ip: string) => {
      await (await get()).setInterfaceIP(ip);
      await onInterfaceIP?.(ip);
    },
    updatePeers: async (peers: readonly VPNPeer[]) => (await get()).updatePeers(peers),
    repairPeers: async (peers: readonly VPNPeer[]) => (await get()).repairPeers(peers),
    close: async () => {
      if (device) await (await device.catch(() => undefined))?.close();
    },
  };
}
