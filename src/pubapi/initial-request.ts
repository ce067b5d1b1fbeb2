import type * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import type { NodeActivationRequest } from "../core/remote.js";
import { peerFromWire, peerToWire } from "../rpc/peer-wire.js";
import { StreamReader } from "../rpc/stream-reader.js";
import type { CallerContext } from "../core/caller.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import type { ProvenChannel } from "./connect.js";
import type { PubAPIGrpcClient, WireCallerProof, WireInitialRequest } from "./messages.js";

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

/** ActivationServing is what serving an activation stream on a fresh peer takes besides the call. */
export interface ActivationServing {
  peer: MeshPeer;
  /** timeoutMs bounds the wait for each client message. */
  timeoutMs: number;
  /** callerOf binds initial_request's caller proof to the call's connection. */
  callerOf: (proof: WireCallerProof | null | undefined) => CallerContext;
}

/** ActivationStreamRequest is what both activation streams' client messages have: initial_request first. */
type ActivationStreamRequest = { request?: string; initialRequest?: WireInitialRequest | null };

/**
 * openActivationStream starts the fresh peer's side of an activation stream (ActivateAsNode,
 * ActivateAsAdditionalCoordinator): a reader over the call, its first message, which must be
 * initial_request (else INVALID_ARGUMENT naming what came instead), as core's request with its
 * caller (the proof bound to the call's connection by `callerOf`), and a typed write.
 */
export async function openActivationStream<Req extends ActivationStreamRequest, Res>(
  call: grpc.ServerDuplexStream<Req, Res>,
  op: string,
  timeoutMs: number,
  callerOf: (proof: WireCallerProof | null | undefined) => CallerContext,
): Promise<{ reader: StreamReader<Req>; request: NodeActivationRequest; caller: CallerContext; write: (m: Res) => void }> {
  const reader = new StreamReader<Req>(call);
  const first = await reader.next("initial_request", timeoutMs);
  if (first.request !== "initialRequest" || !first.initialRequest) {
    throw new InvalidArgumentError(`${op}: first message must be initial_request, got ${first.request ?? "an empty message"}`);
  }
  const r = first.initialRequest;
  return { reader, request: initialRequestFromWire(r), caller: callerOf(r.callerProof), write: (m) => void call.write(m) };
}

/**
 * runActivationCall is the activating Coordinator's side of an activation stream: over a fresh
 * aTLS channel to `endpoint` (the peer's evidence must verify and show a fresh peer) it opens the
 * call with `open`, sends initial_request with the caller proof of that connection, and lets
 * `drive` run the rest. Any failure cancels the call; the channel is always closed.
 */
export async function runActivationCall<Req extends { initialRequest?: unknown }, Res, T>(
  channel: ProvenChannel,
  req: NodeActivationRequest,
  timeoutMs: number,
  open: (client: PubAPIGrpcClient, options: grpc.CallOptions) => grpc.ClientDuplexStream<Req, Res>,
  drive: (call: grpc.ClientDuplexStream<Req, Res>, reader: StreamReader<Res>) => Promise<T>,
): Promise<T> {
  let call: grpc.ClientDuplexStream<Req, Res> | undefined;
  try {
    const deadline = Date.now() + timeoutMs;
    const proof = await channel.proof(deadline, undefined);
    call = open(channel.client, { deadline });
    const reader = new StreamReader<Res>(call);
    call.write({ initialRequest: initialRequestToWire(req, proof) } as Req);
    const out = await drive(call, reader);
    call.end();
    return out;
  } catch (err) {
    call?.cancel();
    throw err;
  } finally {
    channel.close();
  }
}
