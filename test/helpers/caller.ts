// Raw pubapi calls as a Coordinator (or an impostor) would make them, for caller-authentication tests.
import type * as grpc from "@grpc/grpc-js";
import { access } from "node:fs/promises";
import { join } from "node:path";
import type { Issuer, Validator } from "../../src/attestation/attestation.js";
import { ProvenChannel } from "../../src/pubapi/connect.js";
import type { PubAPIGrpcClient, WireCallerProof } from "../../src/pubapi/messages.js";
import { peerToWire } from "../../src/rpc/peer-wire.js";
import type { PeerRecord } from "../../src/core/peer.js";
import { unaryCall, type UnaryMethod, type UnaryRequest, type UnaryResponse } from "../../src/rpc/status.js";
import type { TestPeer } from "./mesh.js";

/** ProofMaker builds the proof a test sends on a connection with keying material `ekm`. */
export type ProofMaker = (channel: ProvenChannel, ekm: Buffer) => Promise<WireCallerProof | null>;

/** proofAs makes honest proofs: `issuer`'s document for this very connection, no cluster signature. */
export const proofAs = (): ProofMaker => (channel) => channel.proof(Date.now() + 10_000, undefined);

/** RawActivation is an ActivateAsNode stream a test drives by hand. */
export interface RawActivation {
  call: ReturnType<PubAPIGrpcClient["ActivateAsNode"]>;
  /** outcome resolves with the stream's error, or undefined when it ended cleanly. */
  outcome: Promise<grpc.ServiceError | undefined>;
  /** first resolves with the first server message (state_disk_uuid) when there is one. */
  first: Promise<unknown>;
  close(): void;
}

/**
 * startActivation opens an ActivateAsNode stream to `node` (aTLS demanding a fresh peer, caller
 * documents from `issuer`) and sends initial_request with the proof `makeProof` returns.
 */
export async function startActivation(node: TestPeer, validators: Validator[], issuer: Issuer, makeProof: ProofMaker, peers: PeerRecord[]): Promise<RawActivation> {
  const channel = new ProvenChannel(node.endpoint, validators, issuer, true);
  const ekm = await channel.keyingMaterial(Date.now() + 10_000);
  const proof = await makeProof(channel, ekm);
  const call = channel.client.ActivateAsNode();
  let gotFirst: (m: unknown) => void = () => {};
  const first = new Promise<unknown>((r) => (gotFirst = r));
  const outcome = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on("data", (m: unknown) => gotFirst(m));
    call.on("error", (e: grpc.ServiceError) => resolve(e));
    call.on("end", () => resolve(undefined));
  });
  const coordinators = peers.filter((p) => p.role === "coordinator");
  call.write({
    initialRequest: {
      nodeVpnIp: "10.118.0.200",
      peers: peers.map(peerToWire),
      ownerId: Buffer.alloc(32, 1),
      clusterId: Buffer.alloc(32, 2),
      coordinatorVpnIps: coordinators.map((p) => p.vpnIP),
      coordinatorPublicEndpoints: coordinators.map((p) => `${p.publicIP}:${p.pubapiPort}`),
      coordinatorAuthPubKey: Buffer.alloc(32, 3),
      callerProof: proof,
    },
  });
  return { call, outcome, first, close: () => channel.close() };
}

/** sendProven runs one unary call on a fresh channel whose request carries `makeProof`'s proof. */
export async function sendProven<K extends UnaryMethod<PubAPIGrpcClient>>(
  endpoint: string,
  validators: Validator[],
  issuer: Issuer,
  method: K,
  makeProof: ProofMaker,
  request: (proof: WireCallerProof | null) => UnaryRequest<PubAPIGrpcClient, K>,
): Promise<UnaryResponse<PubAPIGrpcClient, K>> {
  const channel = new ProvenChannel(endpoint, validators, issuer, false);
  try {
    const ekm = await channel.keyingMaterial(Date.now() + 10_000);
    return await unaryCall(channel.client, method, request(await makeProof(channel, ekm)), 10_000);
  } finally {
    channel.close();
  }
}

/** exists says whether a file exists. */
export function exists(dir: string, file: string): Promise<boolean> {
  return access(join(dir, file)).then(
    () => true,
    () => false,
  );
}
