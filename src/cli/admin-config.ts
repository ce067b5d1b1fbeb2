import type { AdminConfig } from "../core/mesh-peer.js";
import { renderWgQuickConfig } from "../wireguard/config.js";
import { generateKeyPair } from "../wireguard/keys.js";

/** persistentKeepaliveSec keeps the admin's NAT mappings open. */
const persistentKeepaliveSec = 25;

/** generateAdminKeyPair makes the admin's WireGuard key pair locally (clamped Curve25519, base64). */
export function generateAdminKeyPair(): { privateKey: string; publicKey: string } {
  const kp = generateKeyPair();
  return { privateKey: kp.privKey, publicKey: kp.pubKey };
}

/** adminWGConfig renders the admin's wg0.conf (wg-quick format): every Coordinator and Node is a peer. */
export function adminWGConfig(cfg: AdminConfig, adminPrivateKey: string): string {
  return renderWgQuickConfig({
    privKey: adminPrivateKey,
    address: cfg.adminVPNIP,
    peers: cfg.peers
      .filter((p) => p.role !== "admin" && p.publicIP !== "")
      .map((p) => ({
        pubKey: p.vpnPubKey,
        allowedIPs: [`${p.vpnIP}/32`],
        endpoint: `${p.publicIP.includes(":") ? `[${p.publicIP}]` : p.publicIP}:${p.wgPort}`,
        persistentKeepaliveSec,
        comment: `${p.role} ${p.publicIP}`,
      })),
  });
}
