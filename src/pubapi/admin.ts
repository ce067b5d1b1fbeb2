import type * as grpc from "@grpc/grpc-js";
import type { ActivationResult, NodeFailure } from "../core/coordinator.js";
import { InvalidArgumentError, InternalError } from "../core/errors.js";
import type { AdminConfig } from "../core/mesh-peer.js";
import { signAdminRequest } from "../core/admin-auth.js";
import { adminPayloadCodec, type AdminMethod } from "../rpc/proto.js";
import { peerFromWire } from "../rpc/peer-wire.js";
import { unaryCall } from "../rpc/status.js";
import { pubapiError } from "./errors.js";
import { newPubAPIClient } from "./client.js";
import type { WireActivateAdditionalNodesRequest, WireActivationResult, WireAdminConfig, WireAdminRequest, WireFailure, WireRemoveNodeRequest } from "./messages.js";

/** ActivateRequest is what meshctl sends to ActivateAsCoordinator. */
export interface ActivateRequest {
  /** adminVPNPubKey is base64; the private key stays with the admin. */
  adminVPNPubKey: string;
  /** adminPubKey is the admin's Ed25519 public key (32 bytes): the Coordinator stores it and requires its signature on admin RPCs. */
  adminPubKey: Uint8Array;
  masterSecret: Uint8Array;
  nodeEndpoints: string[];
  coordinatorEndpoints: string[];
}

/**
 * activateAsCoordinator calls ActivateAsCoordinator on a fresh peer over `credentials` (aTLS that
 * requires a fresh peer), passes each progress line to onLog and returns the validated AdminConfig.
 */
export async function activateAsCoordinator(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  req: ActivateRequest,
  onLog: (line: string) => void,
  timeoutMs = 30 * 60_000,
): Promise<AdminConfig> {
  const c = await serverStream<{ log?: { message: string }; adminConfig?: WireAdminConfig | null }, WireAdminConfig>(
    endpoint,
    credentials,
    "ActivateAsCoordinator",
    {
      adminVpnPubKey: Buffer.from(req.adminVPNPubKey, "base64"),
      masterSecret: Buffer.from(req.masterSecret),
      adminPubKey: Buffer.from(req.adminPubKey),
      nodePublicEndpoints: req.nodeEndpoints,
      coordinatorPublicEndpoints: req.coordinatorEndpoints,
    },
    (m) => (m.log ? (onLog(m.log.message), undefined) : m.adminConfig ?? undefined),
    timeoutMs,
  );
  if (c.ownerId.length !== 32 || c.clusterId.length !== 32) throw new InvalidArgumentError("AdminConfig: ownerID and clusterID must be 32 bytes");
  return {
    adminVPNIP: peerFromWire({ role: "admin", publicIp: "", vpnIp: c.adminVpnIp, vpnPubKey: Buffer.from(req.adminVPNPubKey, "base64"), wgPort: 0, pubapiPort: 0 }, "adminVPNIP").vpnIP,
    coordinator: peerFromWire(c.coordinator, "coordinator"),
    ownerID: c.ownerId,
    clusterID: c.clusterId,
    peers: c.peers.map((p, i) => peerFromWire(p, `peers[${i}]`)),
    failed: c.failedNodes.map(failureFromWire),
  };
}

/**
 * AdminSigner is the admin's Ed25519 secret key (64 bytes, tweetnacl form; see src/cli/admin-key.ts)
 * and the ID of the admin's cluster (admin.json's clusterId): signatures are valid only there.
 */
export interface AdminSigner {
  secretKey: Uint8Array;
  clusterID: Uint8Array;
}

/**
 * signedAdminRequest fetches a single-use challenge from the Coordinator and returns the signed
 * AdminRequest for `method` carrying `payload`. Send it once: the Coordinator refuses a replay.
 */
export async function signedAdminRequest<T>(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  method: AdminMethod,
  payload: T,
  timeoutMs = 30_000,
): Promise<WireAdminRequest> {
  const client = newPubAPIClient(endpoint, credentials);
  let challenge: Buffer;
  try {
    challenge = (await unaryCall<unknown, { challenge: Buffer }>(client, "GetAdminChallenge", {}, timeoutMs)).challenge;
  } catch (err) {
    throw pubapiError(err, `GetAdminChallenge ${endpoint}`);
  } finally {
    client.close();
  }
  const request = adminPayloadCodec<T>(method).serialize(payload);
  return { request, challenge, signature: signAdminRequest(admin.secretKey, admin.clusterID, method, challenge, request) };
}

/** activateAdditionalNodes asks an activated Coordinator, as its admin, to activate more Nodes, streaming progress. */
export async function activateAdditionalNodes(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  nodeEndpoints: string[],
  onLog: (line: string) => void,
  timeoutMs = 30 * 60_000,
): Promise<ActivationResult> {
  const req = await signedAdminRequest<WireActivateAdditionalNodesRequest>(endpoint, credentials, admin, "ActivateAdditionalNodes", { nodePublicEndpoints: nodeEndpoints });
  return sendActivateAdditionalNodes(endpoint, credentials, req, onLog, timeoutMs);
}

/**
 * activateAdditionalCoordinators asks an activated Coordinator, as its admin, to activate further
 * Coordinators (ActivateAdditionalCoordinator), streaming progress.
 */
export async function activateAdditionalCoordinators(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  coordinatorEndpoints: string[],
  onLog: (line: string) => void,
  timeoutMs = 30 * 60_000,
): Promise<ActivationResult> {
  const req = await signedAdminRequest(endpoint, credentials, admin, "ActivateAdditionalCoordinator", { coordinatorPublicEndpoints: coordinatorEndpoints });
  return sendActivateAdditionalNodes(endpoint, credentials, req, onLog, timeoutMs, "ActivateAdditionalCoordinator");
}

/** sendActivateAdditionalNodes sends an already signed ActivateAdditionalNodes request (see signedAdminRequest). */
export async function sendActivateAdditionalNodes(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  req: WireAdminRequest,
  onLog: (line: string) => void,
  timeoutMs = 30 * 60_000,
  method: "ActivateAdditionalNodes" | "ActivateAdditionalCoordinator" = "ActivateAdditionalNodes",
): Promise<ActivationResult> {
  const r = await serverStream<{ log?: { message: string }; result?: WireActivationResult | null }, WireActivationResult>(
    endpoint,
    credentials,
    method,
    req,
    (m) => (m.log ? (onLog(m.log.message), undefined) : m.result ?? undefined),
    timeoutMs,
  );
  return {
    activated: r.activated.map((p, i) => peerFromWire(p, `activated[${i}]`)),
    failed: r.failedNodes.map(failureFromWire),
  };
}

/**
 * removePeer asks an activated Coordinator, as its admin, to take the peer with vpnIP out
 * (`RemoveNode` for a Node, `RemoveCoordinator` for another Coordinator); returns the new resource
 * version and the removed peer's pubapi endpoint.
 */
export async function removePeer(
  method: "RemoveNode" | "RemoveCoordinator",
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  vpnIP: string,
  timeoutMs = 60_000,
): Promise<{ resourceVersion: number; endpoint: string }> {
  const req = await signedAdminRequest<WireRemoveNodeRequest>(endpoint, credentials, admin, method, { vpnIp: vpnIP });
  const client = newPubAPIClient(endpoint, credentials);
  try {
    const r = await unaryCall<unknown, { resourceVersion: number; endpoint: string }>(client, method, req, timeoutMs);
    return { resourceVersion: r.resourceVersion, endpoint: r.endpoint };
  } catch (err) {
    throw pubapiError(err, `${method} ${endpoint}`);
  } finally {
    client.close();
  }
}

/** getState returns a peer's state name. */
export async function getState(endpoint: string, credentials: grpc.ChannelCredentials, timeoutMs = 30_000): Promise<string> {
  const client = newPubAPIClient(endpoint, credentials);
  try {
    return (await unaryCall<unknown, { state: string }>(client, "GetState", {}, timeoutMs)).state;
  } catch (err) {
    throw pubapiError(err, `GetState ${endpoint}`);
  } finally {
    client.close();
  }
}

/** serverStream runs a server-streaming call; `pick` returns the final message (others are progress). */
function serverStream<M, R>(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  method: string,
  request: unknown,
  pick: (m: M) => R | undefined,
  timeoutMs: number,
): Promise<R> {
  const client = newPubAPIClient(endpoint, credentials);
  return new Promise((resolve, reject) => {
    let result: R | undefined;
    const fn = (client as unknown as Record<string, (r: unknown, o: grpc.CallOptions) => grpc.ClientReadableStream<M>>)[method];
    const call = fn.call(client, request, { deadline: Date.now() + timeoutMs });
    call.on("data", (m: M) => {
      const r = pick(m);
      if (r !== undefined) result = r;
    });
    call.on("error", (err) => {
      client.close();
      reject(pubapiError(err, `${method} ${endpoint}`));
    });
    call.on("end", () => {
      client.close();
      if (result === undefined) reject(new InternalError(`${method} ${endpoint}: stream ended without a result`));
      else resolve(result);
    });
  });
}

/** failureFromWire reads one NodeFailure. */
function failureFromWire(f: WireFailure): NodeFailure {
  return { endpoint: String(f.endpoint), error: String(f.error), marked: f.marked === true };
}
