import type { PeerRecord } from "./peer.js";
import type { Logger } from "../shared/logger.js";
import type { Clock } from "./clock.js";
import type { UpdateLoopOptions } from "./update-loop.js";
import type { VPN, VPNPeer } from "./vpn.js";

/** toVPNPeers turns the peer set into a device's wanted peers: everyone but `selfVPNIP`. */
export function toVPNPeers(peers: readonly PeerRecord[], selfVPNIP: string): VPNPeer[] {
  return peers
    .filter((p) => p.vpnIP !== selfVPNIP)
    .map((p) => ({ pubKey: p.vpnPubKey, publicIP: p.publicIP, vpnIP: p.vpnIP, ...(p.wgPort ? { port: p.wgPort } : {}) }));
}

/**
 * deviceSync is the part of an UpdateLoop's options that keeps `o.vpn` at the peer set (everyone but
 * `selfVPNIP`): apply and repair, the interval, clock and a logger named `component`; `then` runs
 * after each apply (a Node learns its Coordinators, meshd hooks).
 */
export function deviceSync(
  o: { vpn: VPN; updateIntervalMs: number; clock: Clock; logger: Logger },
  selfVPNIP: string,
  component: string,
  then: (peers: PeerRecord[]) => Promise<void> | void,
): Pick<UpdateLoopOptions, "apply" | "repair" | "intervalMs" | "clock" | "logger"> {
  return {
    apply: async (peers) => {
      await o.vpn.updatePeers(toVPNPeers(peers, selfVPNIP));
      await then(peers);
    },
    repair: (peers) => o.vpn.repairPeers(toVPNPeers(peers, selfVPNIP)),
    intervalMs: o.updateIntervalMs,
    clock: o.clock,
    logger: o.logger.child(component),
  };
}
