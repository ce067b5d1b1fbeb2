import { InvalidArgumentError } from "./errors.js";
import { checkIP, checkWGKey } from "./validate.js";

import type { PeerRecord, Role } from "../shared/shapes.js";

/** Role and PeerRecord are defined with the other shared shapes (src/shared/shapes.ts). */
export type { PeerRecord, Role };

const roles: readonly Role[] = ["coordinator", "node", "admin"];

/** checkPeerRecord validates a peer record from the network or the store; `field` prefixes messages. */
export function checkPeerRecord(p: unknown, field: string): PeerRecord {
  if (typeof p !== "object" || p === null) throw new InvalidArgumentError(`${field}: must be a peer`);
  const r = p as Record<string, unknown>;
  if (!roles.includes(r.role as Role)) throw new InvalidArgumentError(`${field}.role: must be coordinator, node or admin`);
  const role = r.role as Role;
  const publicIP = role === "admin" && (r.publicIP === "" || r.publicIP === undefined) ? "" : checkIP(r.publicIP, `${field}.publicIP`);
  return {
    role,
    publicIP,
    vpnIP: checkIP(r.vpnIP, `${field}.vpnIP`),
    vpnPubKey: checkWGKey(r.vpnPubKey, `${field}.vpnPubKey`),
    wgPort: checkPort(r.wgPort, `${field}.wgPort`, role === "admin"),
    pubapiPort: checkPort(r.pubapiPort, `${field}.pubapiPort`, role === "admin"),
  };
}

/** checkPeerSet validates a list of peers: each record, and no VPN IP or public key twice. */
export function checkPeerSet(peers: readonly unknown[], field: string): PeerRecord[] {
  const out = peers.map((p, i) => checkPeerRecord(p, `${field}[${i}]`));
  const ips = new Set<string>();
  const keys = new Set<string>();
  for (const [i, p] of out.entries()) {
    if (ips.has(p.vpnIP)) throw new InvalidArgumentError(`${field}[${i}].vpnIP: ${p.vpnIP} appears twice`);
    if (keys.has(p.vpnPubKey)) throw new InvalidArgumentError(`${field}[${i}].vpnPubKey: the same key appears twice`);
    ips.add(p.vpnIP);
    keys.add(p.vpnPubKey);
  }
  return out;
}

function checkPort(v: unknown, field: string, zeroAllowed: boolean): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < (zeroAllowed ? 0 : 1) || v > 65535) {
    throw new InvalidArgumentError(`${field}: must be a port 1-65535, got ${String(v)}`);
  }
  return v;
}
