import type { NodeActivationRequest } from "../core/remote.js";
import { peerFromWire, peerToWire } from "../rpc/peer-wire.js";
import type { WireCallerProof, WireInitialRequest } from "./messages.js";

/**
 * initialRequestToWire renders the first message a Coordinator sends a fresh peer (ActivateAsNode
 * and ActivateAsAdditionalCoordinator share it), with the caller proof of the stream's connection.
 */
export function initialRequestToWire(req: NodeActivationRequest, proof: WireCallerProof): WireInitialRequest {
  return {
    nodeVpnIp: req.nodeVPNIP,
    peers: req.peers.map(peerToWire),
    ownerId: req.ownerID,
    clusterId: req.clusterID,
    coordinatorVpnIps: req.coordinatorVPNIPs,
    coordinatorPublicEndpoints: req.coordinatorEndpoints,
    coordinatorAuthPubKey: req.coordinatorAuthPubKey,
    callerProof: proof,
  };
}

/**
 * initialRequestFromWire turns a received initial request into core's NodeActivationRequest; peer
 * records are validated here (errors name the field), the rest by the core.
 */
export function initialRequestFromWire(r: WireInitialRequest): NodeActivationRequest {
  return {
    nodeVPNIP: r.nodeVpnIp,
    ownerID: r.ownerId,
    clusterID: r.clusterId,
    peers: r.peers.map((p, i) => peerFromWire(p, `peers[${i}]`)),
    coordinatorVPNIPs: r.coordinatorVpnIps,
    coordinatorEndpoints: r.coordinatorPublicEndpoints,
    coordinatorAuthPubKey: r.coordinatorAuthPubKey,
  };
}
