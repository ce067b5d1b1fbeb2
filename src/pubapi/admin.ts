import type * as grpc from "@grpc/grpc-js";
import type { ActivationResult, NodeFailure } from "../core/coordinator.js";
import { InvalidArgumentError, InternalError } from "../core/errors.js";
import type { AdminConfig } from "../core/mesh-peer.js";
import { signAdminRequest } from "../core/admin-auth.js";
import { adminPayloadCodec, type AdminMethod, type AdminPayloadIn } from "../rpc/proto.js";
import { peerFromWire } from "../rpc/peer-wire.js";
import { unaryCall } from "../rpc/status.js";
import { pubapiError } from "./errors.js";
import { newPubAPIClient } from "./client.js";
import type { PubAPIGrpcClient, WireActivationResult, WireAdminConfig, WireAdminRequest, WireFailure } from "./messages.js";

/**
 * AdminStream is a server-streaming admin call to the peer at `endpoint` over `credentials`: progress
 * lines go to onLog as they come, the final message is the result; `timeoutMs` bounds the call.
 */
export type AdminStream<Req, Res, Extra extends unknown[] = []> = (
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  req: Req,
  onLog: (line: string) => void,
  timeoutMs?: number,
  ...extra: Partial<Extra>
) => Promise<Res>;

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
export const activateAsCoordinator: AdminStream<ActivateRequest, AdminConfig> = async (endpoint, credentials, req, onLog, timeoutMs = 30 * 60_000) => {
  const c: WireAdminConfig = await serverStream(
    endpoint,
    credentials,
    "ActivateAsCoordinator",
    (client, options) =>
      client.ActivateAsCoordinator(
        {
          adminVpnPubKey: Buffer.from(req.adminVPNPubKey, "base64"),
          masterSecret: Buffer.from(req.masterSecret),
          adminPubKey: Buffer.from(req.adminPubKey),
          nodePublicEndpoints: req.nodeEndpoints,
          coordinatorPublicEndpoints: req.coordinatorEndpoints,
        },
        options,
      ),
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
};

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
export async function signedAdminRequest<M extends AdminMethod>(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  method: M,
  payload: AdminPayloadIn<M>,
  timeoutMs = 30_000,
): Promise<WireAdminRequest> {
  const client = newPubAPIClient(endpoint, credentials);
  let challenge: Buffer;
  try {
    challenge = (await unaryCall(client, "GetAdminChallenge", {}, timeoutMs)).challenge;
  } catch (err) {
    throw pubapiError(err, `GetAdminChallenge ${endpoint}`);
  } finally {
    client.close();
  }
  const request = adminPayloadCodec(method).serialize(payload);
  return { request, challenge, signature: signAdminRequest(admin.secretKey, admin.clusterID, method, challenge, request) };
}

/**
 * ActivateMore asks an activated Coordinator at `endpoint`, as its admin, to activate more peers
 * (`endpoints`), streaming progress lines to onLog, and returns who was activated and who failed.
 */
export type ActivateMore = (
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  admin: AdminSigner,
  endpoints: string[],
  onLog: (line: string) => void,
  timeoutMs?: number,
) => Promise<ActivationResult>;

/** activateAdditionalNodes activates more Nodes (ActivateAdditionalNodes); see ActivateMore. */
export const activateAdditionalNodes: ActivateMore = async (endpoint, credentials, admin, endpoints, onLog, timeoutMs = 30 * 60_000) =>
  sendActivateAdditionalNodes(endpoint, credentials, await signedAdminRequest(endpoint, credentials, admin, "ActivateAdditionalNodes", { nodePublicEndpoints: endpoints }), onLog, timeoutMs);

/** activateAdditionalCoordinators activates further Coordinators (ActivateAdditionalCoordinator); see ActivateMore. */
export const activateAdditionalCoordinators: ActivateMore = async (endpoint, credentials, admin, endpoints, onLog, timeoutMs = 30 * 60_000) =>
  sendActivateAdditionalNodes(
    endpoint,
    credentials,
    await signedAdminRequest(endpoint, credentials, admin, "ActivateAdditionalCoordinator", { coordinatorPublicEndpoints: endpoints }),
    onLog,
    timeoutMs,
    "ActivateAdditionalCoordinator",
  );

/** sendActivateAdditionalNodes sends an already signed ActivateAdditionalNodes request (see signedAdminRequest). */
export const sendActivateAdditionalNodes: AdminStream<WireAdminRequest, ActivationResult, ["ActivateAdditionalNodes" | "ActivateAdditionalCoordinator"]> = async (
  endpoint,
  credentials,
  req,
  onLog,
  timeoutMs = 30 * 60_000,
  method = "ActivateAdditionalNodes",
) => {
  const r: WireActivationResult = await serverStream(
    endpoint,
    credentials,
    method,
    (client, options) => client[method](req, options),
    (m) => (m.log ? (onLog(m.log.message), undefined) : m.result ?? undefined),
    timeoutMs,
  );
  return {
    activated: r.activated.map((p, i) => peerFromWire(p, `activated[${i}]`)),
    failed: r.failedNodes.map(failureFromWire),
  };
};

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
  const req = await signedAdminRequest(endpoint, credentials, admin, method, { vpnIp: vpnIP });
  const client = newPubAPIClient(endpoint, credentials);
  try {
    const r = await unaryCall(client, method, req, timeoutMs);
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
    return (await unaryCall(client, "GetState", {}, timeoutMs)).state;
  } catch (err) {
    throw pubapiError(err, `GetState ${endpoint}`);
  } finally {
    client.close();
  }
}

/**
 * serverStream runs a server-streaming call that `start` makes on a generated client; `pick`
 * returns the final message (others are progress). `method` names the call in errors.
 */
function serverStream<M, R>(
  endpoint: string,
  credentials: grpc.ChannelCredentials,
  method: string,
  start: (client: PubAPIGrpcClient, options: grpc.CallOptions) => grpc.ClientReadableStream<M>,
  pick: (m: M) => R | undefined,
  timeoutMs: number,
): Promise<R> {
  const client = newPubAPIClient(endpoint, credentials);
  return new Promise((resolve, reject) => {
    let result: R | undefined;
    const call = start(client, { deadline: Date.now() + timeoutMs });
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
