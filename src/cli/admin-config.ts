import nacl from "tweetnacl";
import type { AdminConfig } from "../core/mesh-peer.js";

/** persistentKeepaliveSec keeps the admin's NAT mappings open. */
const persistentKeepaliveSec = 25;

/** generateAdminKeyPair makes the admin's WireGuard key pair locally (clamped Curve25519, base64). */
export function generateAdminKeyPair(): { privateKey: string; publicKey: string } {
  const kp = nacl.box.keyPair();
  return { privateKey: Buffer.from(kp.secretKey).toString("base64"), publicKey: Buffer.from(kp.publicKey).toString("base64") };
}

/** adminWGConfig renders the admin's wg0.conf (wg-quick format): every Coordinator and Node is a peer. */
export function adminWGConfig(cfg: AdminConfig, adminPrivateKey: string): string {
  const lines = ["[Interface]", `PrivateKey = ${adminPrivateKey}`, `Address = ${cfg.adminVPNIP}/16`, ""];
  for (const p of cfg.peers) {
    if (p.role === "admin" || p.publicIP === "") continue;
    lines.push(
      `# ${p.role} ${p.publicIP}`,
      "[Peer]",
      `PublicKey = ${p.vpnPubKey}`,
      `AllowedIPs = ${p.vpnIP}/32`,
      `Endpoint = ${p.publicIP.includes(":") ? `[${p.publicIP}]` : p.publicIP}:${p.wgPort}`,
      `PersistentKeepalive = ${persistentKeepaliveSec}`,
      "",
    );
  }
  return lines.join("\n");
}
