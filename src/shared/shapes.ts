/**
 * Shapes several layers share, in one leaf module that imports nothing of ours (CONVENTIONS.md,
 * "Seams between layers"): the peer record, the node state a peer keeps across reboots and its
 * sealed key, and the WireGuard key text format, with the checks of their persisted forms. The
 * core re-exports the types; the diskencryption layer (which may not import core) uses them here.
 */
import { isIP } from "node:net";

/** wgKeyPattern matches the canonical base64 text of a 32-byte WireGuard key, as `wg pubkey` prints it (44 characters, zero padding bits). */
export const wgKeyPattern = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Role is what a peer record stands for. */
export type Role = "coordinator" | "node" | "admin";

/**
 * PeerRecord is one member of the mesh as the Coordinators store it and serve it to everyone in the
 * VPN. Admins have no public address (empty publicIP): they dial in.
 */
export interface PeerRecord {
  role: Role;
  /** publicIP is the address of the peer's WireGuard port and pubapi; empty for admins. */
  publicIP: string;
  /** vpnIP is the peer's address inside the VPN. */
  vpnIP: string;
  /** vpnPubKey is the peer's WireGuard public key, base64. */
  vpnPubKey: string;
  /** wgPort is the peer's WireGuard port (0 for admins). */
  wgPort: number;
  /** pubapiPort is the peer's public API port (0 for admins). */
  pubapiPort: number;
}

/**
 * NodeState is what a peer remembers about its own activation, so that after a restart it knows
 * its role, VPN IP and where its Coordinators are (DESIGN.md: persisted before the TPM is marked).
 * It holds no secret: owner and cluster IDs are public identifiers.
 */
export interface NodeState {
  role: "coordinator" | "node";
  vpnIP: string;
  ownerID: string;
  clusterID: string;
  /** coordinatorVPNIPs are where the vpnapi is served (Nodes only; Coordinators list themselves). */
  coordinatorVPNIPs: string[];
  /** coordinatorEndpoints are the Coordinators' public pubapi endpoints, for re-joining after a reboot. */
  coordinatorEndpoints: string[];
  /**
   * coordinatorPeers are the Coordinators' WireGuard peers (public keys and addresses only), so a
   * rebooted Node whose device came back empty can reach the vpnapi through the VPN again.
   */
  coordinatorPeers: PeerRecord[];
  /**
   * coordinatorAuthPubKey is the cluster credential's public key (base64, 32 bytes Ed25519), given
   * at activation (Nodes only): the Node acts only for callers that sign their connection with it.
   */
  coordinatorAuthPubKey?: string;
}

/** SealedKey is a key sealed to this machine's TPM and PCRs (TPM2B_PUBLIC / TPM2B_PRIVATE, base64). */
export interface SealedKey {
  pcrs: number[];
  public: string;
  private: string;
}

/** NodeStateRecord is the persisted node state with the sealed MAC key and the tag over it. */
export interface NodeStateRecord {
  nodeState: NodeState;
  sealedKey: SealedKey;
  tag: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** checkSealedKey validates a parsed SealedKey (field lengths bound what reaches the TPM) and returns a copy. */
export function checkSealedKey(v: unknown, field = "sealedKey"): SealedKey {
  if (!isObject(v)) throw new Error(`${field}: not an object`);
  const pcrs = v.pcrs;
  if (!Array.isArray(pcrs) || pcrs.length === 0 || pcrs.length > 24) throw new Error(`${field}.pcrs: must list 1 to 24 PCRs`);
  if (!pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23) || new Set(pcrs).size !== pcrs.length) {
    throw new Error(`${field}.pcrs: must be distinct integers from 0 to 23`);
  }
  const b64 = (x: unknown, name: string): string => {
    if (typeof x !== "string" || x.length === 0 || x.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(x)) {
      throw new Error(`${field}.${name}: must be base64 of at most 2048 characters`);
    }
    return x;
  };
  return { pcrs: [...(pcrs as number[])], public: b64(v.public, "public"), private: b64(v.private, "private") };
}

/**
 * checkNodeStateRecord validates a parsed NodeStateRecord (from a file or a LUKS2 token) and returns
 * a copy with only the record's fields, or throws an Error naming the bad field.
 */
export function checkNodeStateRecord(v: unknown): NodeStateRecord {
  if (!isObject(v)) throw new Error("not an object");
  if (typeof v.tag !== "string" || !/^[0-9a-f]{64}$/.test(v.tag)) throw new Error("tag: must be 64 lower-case hex characters");
  let nodeState: NodeState;
  try {
    nodeState = checkNodeState(v.nodeState);
  } catch (err) {
    throw new Error(`nodeState: ${(err as Error).message}`, { cause: err });
  }
  return { nodeState, sealedKey: checkSealedKey(v.sealedKey), tag: v.tag };
}

/**
 * checkNodeState validates a parsed NodeState and returns a copy with only NodeState's fields, or
 * throws an Error naming the bad field.
 */
export function checkNodeState(v: unknown): NodeState {
  if (!isObject(v)) throw new Error("not an object");
  if (v.role !== "coordinator" && v.role !== "node") throw new Error("role: must be coordinator or node");
  const ip = (x: unknown, field: string): string => {
    if (typeof x !== "string" || isIP(x) === 0) throw new Error(`${field}: not an IP address`);
    return x;
  };
  const hex = (x: unknown, field: string): string => {
    if (typeof x !== "string" || !/^[0-9a-f]{64}$/.test(x)) throw new Error(`${field}: must be 64 lower-case hex characters`);
    return x;
  };
  if (!Array.isArray(v.coordinatorVPNIPs) || !Array.isArray(v.coordinatorEndpoints)) throw new Error("coordinators: must be arrays");
  if (!v.coordinatorEndpoints.every((e) => typeof e === "string" && e.length < 300)) throw new Error("coordinatorEndpoints: must be strings under 300 characters");
  const peersIn: unknown = v.coordinatorPeers ?? [];
  if (!Array.isArray(peersIn)) throw new Error("coordinatorPeers: must be an array");
  const seenIP = new Set<string>();
  const seenKey = new Set<string>();
  const coordinatorPeers = peersIn.map((p: unknown, i) => {
    const f = `coordinatorPeers[${i}]`;
    if (!isObject(p)) throw new Error(`${f}: must be a peer`);
    if (p.role !== "coordinator" && p.role !== "node" && p.role !== "admin") throw new Error(`${f}.role: must be coordinator, node or admin`);
    const admin = p.role === "admin";
    const port = (x: unknown, field: string): number => {
      if (typeof x !== "number" || !Number.isInteger(x) || x < (admin ? 0 : 1) || x > 65535) throw new Error(`${f}.${field}: not a port`);
      return x;
    };
    if (typeof p.vpnPubKey !== "string" || !wgKeyPattern.test(p.vpnPubKey)) throw new Error(`${f}.vpnPubKey: not a WireGuard key`);
    const rec = {
      role: p.role as Role,
      publicIP: admin && (p.publicIP === "" || p.publicIP === undefined) ? "" : ip(p.publicIP, `${f}.publicIP`),
      vpnIP: ip(p.vpnIP, `${f}.vpnIP`),
      vpnPubKey: p.vpnPubKey,
      wgPort: port(p.wgPort, "wgPort"),
      pubapiPort: port(p.pubapiPort, "pubapiPort"),
    };
    if (seenIP.has(rec.vpnIP) || seenKey.has(rec.vpnPubKey)) throw new Error(`${f}: VPN IP or public key appears twice`);
    seenIP.add(rec.vpnIP);
    seenKey.add(rec.vpnPubKey);
    return rec;
  });
  return {
    role: v.role,
    vpnIP: ip(v.vpnIP, "vpnIP"),
    ownerID: hex(v.ownerID, "ownerID"),
    clusterID: hex(v.clusterID, "clusterID"),
    coordinatorVPNIPs: v.coordinatorVPNIPs.map((x, i) => ip(x, `coordinatorVPNIPs[${i}]`)),
    coordinatorEndpoints: [...(v.coordinatorEndpoints as string[])],
    coordinatorPeers,
    ...(v.coordinatorAuthPubKey !== undefined ? { coordinatorAuthPubKey: authPubKey(v.coordinatorAuthPubKey) } : {}),
  };
}

function authPubKey(x: unknown): string {
  if (typeof x !== "string" || !/^[A-Za-z0-9+/]{43}=$/.test(x)) throw new Error("coordinatorAuthPubKey: must be a base64 32-byte Ed25519 public key");
  return x;
}
