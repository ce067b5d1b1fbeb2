import { InvalidArgumentError, ResourceExhaustedError } from "./errors.js";
import { clusterIDBytes } from "./keys.js";
import { coordinatorAuthPubKeyBytes } from "./coordinator-auth.js";
import { coordinatorPool, inPool, ipOf, nodePool, type IPPool } from "./ip-pool.js";
import { checkPeerSet } from "./peer.js";
import type { NodeActivationRequest } from "./remote.js";
import { checkBytes, checkIP, formatEndpoint, parseEndpoint } from "./validate.js";
import { isIP } from "node:net";

/** maxNodesPerCall bounds the endpoints of one ActivateAsCoordinator/ActivateAdditionalNodes call (bounded work per request). */
export const maxNodesPerCall = 256;

/**
 * checkNodeEndpoints validates Node pubapi endpoints (IP:PORT: the IP is also the WireGuard
 * endpoint), refusing duplicates and the Coordinator itself, and returns them normalized.
 */
export function checkNodeEndpoints(endpoints: readonly unknown[], field: string, self: string): string[] {
  if (!Array.isArray(endpoints)) throw new InvalidArgumentError(`${field}: must be a list`);
  // Bounded work per request: past the bound the caller is told at once, before any work.
  if (endpoints.length > maxNodesPerCall) throw new ResourceExhaustedError(`${field}: at most ${maxNodesPerCall} per call, got ${endpoints.length}; split them over several calls`);
  const seen = new Set<string>();
  return endpoints.map((raw, i) => {
    const ep = parseEndpoint(raw, `${field}[${i}]`);
    if (isIP(ep.host) === 0) throw new InvalidArgumentError(`${field}[${i}]: must be an IP address with port, got ${JSON.stringify(raw)}`);
    const norm = formatEndpoint(ep);
    if (norm === self) throw new InvalidArgumentError(`${field}[${i}]: ${norm} is the Coordinator itself`);
    if (seen.has(norm)) throw new InvalidArgumentError(`${field}[${i}]: ${norm} appears twice`);
    seen.add(norm);
    return norm;
  });
}

/**
 * checkNodeActivation validates the Coordinator's first ActivateAsNode (or, with the Coordinator
 * pool, ActivateAsAdditionalCoordinator) message.
 */
export function checkNodeActivation(req: NodeActivationRequest, pool: IPPool = nodePool): void {
  checkIP(req.nodeVPNIP, "nodeVPNIP");
  if (!inPool(pool, req.nodeVPNIP)) throw new InvalidArgumentError(`nodeVPNIP: ${req.nodeVPNIP} is not in the ${pool === nodePool ? "Node" : "Coordinator"} pool ${ipOf(pool.first)}-${ipOf(pool.last)}`);
  checkBytes(req.ownerID, 32, "ownerID");
  checkBytes(req.clusterID, clusterIDBytes, "clusterID");
  checkBytes(req.coordinatorAuthPubKey, coordinatorAuthPubKeyBytes, "coordinatorAuthPubKey");
  if (!Array.isArray(req.coordinatorVPNIPs) || req.coordinatorVPNIPs.length === 0) {
    throw new InvalidArgumentError("coordinatorVPNIPs: at least one is needed");
  }
  req.coordinatorVPNIPs.forEach((ip, i) => {
    checkIP(ip, `coordinatorVPNIPs[${i}]`);
    if (!inPool(coordinatorPool, ip)) throw new InvalidArgumentError(`coordinatorVPNIPs[${i}]: ${ip} is not in the Coordinator pool`);
  });
  req.coordinatorEndpoints.forEach((e, i) => parseEndpoint(e, `coordinatorEndpoints[${i}]`));
  const peers = checkPeerSet(req.peers, "peers");
  if (peers.some((p) => p.vpnIP === req.nodeVPNIP)) throw new InvalidArgumentError(`peers: ${req.nodeVPNIP} is already taken by another peer`);
  for (const ip of req.coordinatorVPNIPs) {
    if (!peers.some((p) => p.vpnIP === ip && p.role === "coordinator")) throw new InvalidArgumentError(`peers: Coordinator ${ip} is missing`);
  }
}
