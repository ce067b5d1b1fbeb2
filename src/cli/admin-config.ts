import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AdminConfig } from "../core/coordinator-activation.js";
import type { PeerRecord } from "../core/peer.js";
import { writeFileAtomic } from "../shared/atomic-file.js";
import { formatEndpoint, parseEndpoint } from "../core/validate.js";
import { VPNAPIClient, vpnapiPort } from "../vpnapi/client.js";
import { parseWgQuickConfig, renderWgQuickConfig, type WgQuickConfig, type WgQuickPeer } from "../wireguard/config.js";
import { generateKeyPair } from "../wireguard/keys.js";
import { readAdminFile } from "./admin-file.js";
import { UsageError, type Command } from "./command.js";

/** persistentKeepaliveSec keeps the admin's NAT mappings open. */
const persistentKeepaliveSec = 25;

/** adminWGFileName is the admin's wg-quick file in the admin directory. */
export const adminWGFileName = "wg0.conf";

/** generateAdminKeyPair makes the admin's WireGuard key pair locally (clamped Curve25519, base64). */
export function generateAdminKeyPair(): { privateKey: string; publicKey: string } {
  const kp = generateKeyPair();
  return { privateKey: kp.privKey, publicKey: kp.pubKey };
}

/** adminWGPeers are the [Peer] sections of the admin's wg0.conf: every Coordinator and Node (not admins). */
export function adminWGPeers(peers: readonly PeerRecord[]): WgQuickPeer[] {
  return peers
    .filter((p) => p.role !== "admin" && p.publicIP !== "")
    .map((p) => ({
      pubKey: p.vpnPubKey,
      allowedIPs: [`${p.vpnIP}/32`],
      endpoint: `${p.publicIP.includes(":") ? `[${p.publicIP}]` : p.publicIP}:${p.wgPort}`,
      persistentKeepaliveSec,
      comment: `${p.role} ${p.publicIP}`,
    }));
}

/** adminWGConfig renders the admin's wg0.conf (wg-quick format): every Coordinator and Node is a peer. */
export function adminWGConfig(cfg: AdminConfig, adminPrivateKey: string): string {
  return renderWgQuickConfig({ privKey: adminPrivateKey, address: cfg.adminVPNIP, peers: adminWGPeers(cfg.peers) });
}

/** readAdminWGConfig reads and parses DIR/wg0.conf; errors name the file and the line, never the key. */
export async function readAdminWGConfig(dir: string): Promise<WgQuickConfig> {
  const path = join(dir, adminWGFileName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it is written by meshctl activate`);
  }
  try {
    return parseWgQuickConfig(text);
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`);
  }
}

/** ConfigChange counts what a rewrite of wg0.conf changed (by WireGuard public key). */
export interface ConfigChange {
  peers: number;
  added: number;
  removed: number;
}

/**
 * rewriteAdminWGConfig writes DIR/wg0.conf (atomically, mode 0600) with `peers` as its [Peer]
 * sections, keeping the admin's own [Interface] (private key, address, port) as it is.
 */
export async function rewriteAdminWGConfig(dir: string, peers: readonly WgQuickPeer[]): Promise<ConfigChange> {
  const old = await readAdminWGConfig(dir);
  const before = new Set(old.peers.map((p) => p.pubKey));
  const after = new Set(peers.map((p) => p.pubKey));
  await writeFileAtomic(join(dir, adminWGFileName), renderWgQuickConfig({ ...old, peers }));
  return { peers: peers.length, added: [...after].filter((k) => !before.has(k)).length, removed: [...before].filter((k) => !after.has(k)).length };
}

/** mergeAdminWGConfig adds (or updates, by VPN IP or key) `records` in DIR/wg0.conf and keeps every other peer. */
export async function mergeAdminWGConfig(dir: string, records: readonly PeerRecord[]): Promise<ConfigChange> {
  const old = await readAdminWGConfig(dir);
  const fresh = adminWGPeers(records);
  const replaced = (p: WgQuickPeer): boolean => fresh.some((f) => f.pubKey === p.pubKey || f.allowedIPs[0] === p.allowedIPs[0]);
  return rewriteAdminWGConfig(dir, [...old.peers.filter((p) => !replaced(p)), ...fresh]);
}

/** describeChange is the line meshctl prints after rewriting wg0.conf. */
export function describeChange(dir: string, c: ConfigChange): string {
  return `wrote ${join(dir, adminWGFileName)}: ${c.peers} peer(s), ${c.added} added, ${c.removed} removed (run 'wg syncconf' or 'wg-quick down/up' to apply)`;
}

/** adminConfig is `meshctl admin-config`: the admin's wg0.conf rewritten from the current peer set. */
export const adminConfig: Command = {
  name: "admin-config",
  summary: "rewrite the admin's wg0.conf from the current peer set (from inside the VPN)",
  usage: `Usage: meshctl admin-config [--out DIR] [--vpn-endpoint IP[:PORT]]

Asks a Coordinator's vpnapi (through the VPN, as 'meshctl peers' does) for the current peer set and
rewrites DIR/wg0.conf with one [Peer] per Coordinator and Node: peers added since activation appear,
removed ones go. The [Interface] section (the admin's private key, VPN address, port) is kept as it
is; the file is replaced atomically with mode 0600. Apply it with 'wg syncconf' or wg-quick down/up.

Options:
  --out DIR                 the directory of wg0.conf and admin.json (as written by meshctl activate; default .)
  --vpn-endpoint ENDPOINT   the vpnapi to ask (default: the Coordinator VPN IP admin.json names, port ${vpnapiPort})`,
  options: { out: { type: "string" }, "vpn-endpoint": { type: "string" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const dir = typeof v.out === "string" ? v.out : ".";
    // Read (and check) the file first: nothing is asked of the network for a file we cannot rewrite.
    await readAdminWGConfig(dir);
    let target = typeof v["vpn-endpoint"] === "string" ? v["vpn-endpoint"] : undefined;
    if (target === undefined) {
      const admin = await readAdminFile(dir, "give --vpn-endpoint, or --out the directory meshctl activate wrote");
      const ip = admin.fields.coordinatorVPNIP;
      if (typeof ip !== "string") throw new Error(`${admin.path}: coordinatorVPNIP missing; give --vpn-endpoint`);
      target = ip;
    }
    const client = new VPNAPIClient(formatEndpoint(parseEndpoint(target, "--vpn-endpoint", vpnapiPort)));
    try {
      const res = await client.getPeers();
      const change = await rewriteAdminWGConfig(dir, adminWGPeers(res.peers.map((p) => p.peer)));
      io.out(describeChange(dir, change));
      return 0;
    } finally {
      client.close();
    }
  },
};
