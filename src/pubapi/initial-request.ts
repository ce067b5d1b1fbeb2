import type * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import type { NodeActivationRequest } from "../core/remote.js";
import { peerFromWire, peerToWire } from "../rpc/peer-wire.js";
import { StreamReader } from "../rpc/stream-reader.js";
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

/**
 * openActivationStream starts the fresh peer's side of an activation stream (ActivateAsNode,
 * ActivateAsAdditionalCoordinator): a reader over the call, and its first message, which must be
 * initial_request (else INVALID_ARGUMENT naming what came instead).
 */
export async function openActivationStream<Req extends { request?: string; initialRequest?: WireInitialRequest | null }>(
  call: grpc.ServerDuplexStream<unknown, unknown>,
  op: string,
  timeoutMs: number,
): Promise<{ reader: StreamReader<Req>; initial: WireInitialRequest }> {
  const reader = new StreamReader<Req>(call);
  const first = await reader.next("initial_request", timeoutMs);
  if (first.request !== "initialRequest" || !first.initialRequest) {
    throw new InvalidArgumentError(`${op}: first message must be initial_request, got ${first.request ?? "an empty message"}`);
  }
  return { reader, initial: first.initialRequest };
}
