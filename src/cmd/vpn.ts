import { FailedPreconditionError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { VPN } from "../core/vpn.js";
import type { MeshdConfig } from "./flags.js";

/** ManagedVPN is a VPN that meshd closes at shutdown. */
export type ManagedVPN = VPN & { close(): Promise<void> };

/** openVPN opens the WireGuard device meshd was told to use. */
export async function openVPN(config: MeshdConfig, _logger: Logger): Promise<ManagedVPN> {
  throw new FailedPreconditionError(`--vpn ${config.vpn}: the WireGuard backends are not wired into meshd yet`);
}
