/** VPNPeer is one WireGuard peer as the core wants it configured. */
export interface VPNPeer {
  /** pubKey is the peer's WireGuard public key, base64 as `wg pubkey` prints it. */
  pubKey: string;
  /** publicIP is the address the peer's WireGuard port is reached at (no port). */
  publicIP: string;
  /** vpnIP is the peer's address inside the VPN; it is the peer's only allowed IP (/32). */
  vpnIP: string;
  /** port is the peer's WireGuard port; undefined means the default 51820 (admins have none). */
  port?: number;
}

/**
 * VPN is the peer's WireGuard device as the core sees it. The implementation owns the private key
 * (made and kept in the state dir); the core only ever sees the public key. Implementations must be
 * safe to call concurrently (they serialize device writes) and must leave the device in its
 * previous configuration when a write fails.
 */
export interface VPN {
  /** getPublicKey returns this peer's WireGuard public key, base64. */
  getPublicKey(): Promise<string>;
  /** setInterfaceIP assigns the peer's VPN IP (/16 of the VPN network) and brings the interface up. */
  setInterfaceIP(vpnIP: string): Promise<void>;
  /**
   * updatePeers converges the device's peers to exactly `peers` (the caller excludes itself),
   * writing only what changed since the last call; an endpoint is written only for a new peer or
   * when its publicIP/port changed, so endpoints WireGuard learned by roaming are kept.
   */
  updatePeers(peers: readonly VPNPeer[]): Promise<void>;
  /** repairPeers is updatePeers after re-reading the device (restores what a reset removed); rare. */
  repairPeers(peers: readonly VPNPeer[]): Promise<void>;
}
