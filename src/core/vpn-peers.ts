import type { PeerRecord } from "./peer.js";
import type { VPNPeer } from "./vpn.js";

/** toVPNPeers turns the peer set into a device's wanted peers: everyone but `selfVPNIP`. */
export function toVPNPeers(peers: readonly PeerRecord[], selfVPNIP: string): VPNPeer[] {
  return peers
    .filter((p) => p.vpnIP !== selfVPNIP)
    .map((p) => ({ pubKey: p.vpnPubKey, publicIP: p.publicIP, vpnIP: p.vpnIP, ...(p.wgPort ? { port: p.wgPort } : {}) }));
}
