import * as grpc from "@grpc/grpc-js";
import type { ActivationResult } from "../core/coordinator.js";
import type { CallerContext } from "../core/caller.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import { checkDiskUUID } from "../core/keys.js";
import { connectionSignatureBytes } from "../core/coordinator-auth.js";
import type { AdminGrant } from "../core/admin-auth.js";
import { peerToWire } from "../rpc/peer-wire.js";
import { adminPayloadCodec, maxMessageBytes, serviceOf, type AdminMethod } from "../rpc/proto.js";
import { serveActivateAsAdditionalCoordinator } from "./activate-coordinator.js";
import { auditLog } from "../rpc/audit.js";
import { callerRateLimit, type CallerRateLimitOptions } from "../rpc/rate-limit.js";
import { toStatus } from "../rpc/status.js";
import { serveActivateAsNode } from "./activate-node-server.js";
import type { WireActivateAdditionalNodesRequest, WireAdminRequest, WireCallerProof, WireFailure, WireRemoveNodeRequest } from "./messages.js";

/**
 * CallConnections reaches the TLS connection of a call by its peer address (call.getPeer()); the
 * aTLS server credentials' `connections` implement it.
 */
export interface CallConnections {
  /** keyingMaterial returns the caller-proof keying material of the connection, or throws PermissionDeniedError. */
  keyingMaterial(peer: string): Buffer;
}

/** PubAPIServerOptions wires the public API to a peer. */
export interface PubAPIServerOptions {
  peer: MeshPeer;
  logger: Logger;
  /** connections are the aTLS server credentials' connections (ATLSServerCredentials.connections) of the server's binding. */
  connections: CallConnections;
  /** streamMessageTimeoutMs bounds the wait for each ActivateAsNode message (default 60 s). */
  streamMessageTimeoutMs?: number;
  /** callerRateLimit bounds calls per remote IP (RESOURCE_EXHAUSTED past it); undefined: its defaults. */
  callerRateLimit?: CallerRateLimitOptions;
}


/**
 * createPubAPIServer returns a grpc-js Server with the pubapi service bound to `peer`. The caller
 * binds it with the aTLS server credentials whose `connections` it was given, and owns its shutdown.
 */
export function createPubAPIServer(o: PubAPIServerOptions): grpc.Server {
  const server = new grpc.Server({ "grpc.max_receive_message_length": maxMessageBytes, interceptors: [auditLog(o.logger.child("audit")), callerRateLimit(o.callerRateLimit)] });
  const log = o.logger;
  const fail = <T>(op: string, cb: grpc.sendUnaryData<T>) => (err: unknown) => cb(toStatus(err, op, log) as grpc.ServiceError, null);
  const failStream = (op: string, call: grpc.ServerWritableStream<unknown, unknown>) => (err: unknown) =>
    call.emit("error", toStatus(err, op, log));
  /** callerOf binds a caller proof to the call's own connection (its keying material as this side sees it). */
  const callerOf = (call: { getPeer(): string }, proof: WireCallerProof | null | undefined): CallerContext => ({
    ekm: o.connections.keyingMaterial(call.getPeer()),
    proof: proof ? { oid: proof.oid, document: proof.document, clusterSignature: proof.clusterSignature } : undefined,
  });
  /** activateMore serves an admin's activation of more peers: progress lines as they come, then the result. */
  const activateMore = <T>(
    call: grpc.ServerWritableStream<WireAdminRequest, unknown>,
    method: AdminMethod,
    run: (grant: AdminGrant, payload: T, progress: (message: string) => void) => Promise<ActivationResult>,
  ): void => {
    (async () => {
      const { grant, payload } = await admin<T>(method, call.request);
      const res = await run(grant, payload, (message) => {
        if (!call.cancelled) call.write({ log: { message } });
      });
      call.write({ result: { activated: res.activated.map(peerToWire), failedNodes: res.failed } });
      call.end();
    })().catch(failStream(method, call as grpc.ServerWritableStream<unknown, unknown>));
  };
  /** admin verifies an admin request and only then decodes its payload. */
  const admin = async <T>(method: AdminMethod, req: WireAdminRequest): Promise<{ grant: AdminGrant; payload: T }> => {
    const grant = await o.peer.authorizeAdmin({ method, challenge: req.challenge, request: req.request, signature: req.signature }, method);
    let payload: T;
    try {
      payload = adminPayloadCodec<T>(method).deserialize(req.request);
    } catch (err) {
      throw new InvalidArgumentError(`${method}: request: not a valid payload`, { cause: err });
    }
    return { grant, payload };
  };

  server.addService(serviceOf("pubapi").service, {
    GetState: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { state: o.peer.state, waitingDiskUuid: o.peer.waitingDiskUUID ?? "" }),

    ActivateAsCoordinator: (call: grpc.ServerWritableStream<Record<string, unknown>, unknown>) => {
      const r = call.request as { adminVpnPubKey: Buffer; nodePublicEndpoints: string[]; coordinatorPublicEndpoints: string[]; masterSecret: Buffer; adminPubKey: Buffer };
      const write = (message: string): void => {
        if (!call.cancelled) call.write({ log: { message } });
      };
      (async () => {
        if (r.adminVpnPubKey.length !== 32) throw new InvalidArgumentError(`adminVPNPubKey: must be 32 bytes, got ${r.adminVpnPubKey.length}`);
        const cfg = await o.peer.activateAsCoordinator(
          {
            adminVPNPubKey: r.adminVpnPubKey.toString("base64"),
            adminPubKey: r.adminPubKey,
            masterSecret: r.masterSecret,
            nodeEndpoints: r.nodePublicEndpoints,
            coordinatorEndpoints: r.coordinatorPublicEndpoints,
          },
          write,
        );
        call.write({
          adminConfig: {
            adminVpnIp: cfg.adminVPNIP,
            coordinator: peerToWire(cfg.coordinator),
            ownerId: cfg.ownerID,
            clusterId: cfg.clusterID,
            peers: cfg.peers.map(peerToWire),
            failedNodes: cfg.failed satisfies WireFailure[],
          },
        });
        call.end();
      })().catch(failStream("ActivateAsCoordinator", call));
    },

    ActivateAsNode: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      serveActivateAsNode(call, o.peer, o.streamMessageTimeoutMs ?? 60_000, (proof) => callerOf(call, proof)).catch((err: unknown) =>
        call.emit("error", toStatus(err, "ActivateAsNode", log)),
      );
    },

    GetAdminChallenge: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => o.peer.getAdminChallenge())
        .then((challenge) => cb(null, { challenge }), fail("GetAdminChallenge", cb));
    },

    ActivateAdditionalNodes: (call: grpc.ServerWritableStream<WireAdminRequest, unknown>) =>
      activateMore<WireActivateAdditionalNodesRequest>(call, "ActivateAdditionalNodes", (grant, p, progress) => o.peer.activateAdditionalNodes(grant, p.nodePublicEndpoints, progress)),

    ActivateAdditionalCoordinator: (call: grpc.ServerWritableStream<WireAdminRequest, unknown>) =>
      activateMore<{ coordinatorPublicEndpoints: string[] }>(call, "ActivateAdditionalCoordinator", (grant, p, progress) =>
        o.peer.activateAdditionalCoordinators(grant, p.coordinatorPublicEndpoints, progress),
      ),

    ActivateAsAdditionalCoordinator: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      serveActivateAsAdditionalCoordinator(call, o.peer, o.streamMessageTimeoutMs ?? 60_000, (proof) => callerOf(call, proof)).catch((err: unknown) =>
        call.emit("error", toStatus(err, "ActivateAsAdditionalCoordinator", log)),
      );
    },

    RemoveNode: (call: grpc.ServerUnaryCall<WireAdminRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const { grant, payload } = await admin<WireRemoveNodeRequest>("RemoveNode", call.request);
        return o.peer.removeNode(grant, payload.vpnIp);
      })().then((r) => cb(null, r), fail("RemoveNode", cb));
    },

    RemoveCoordinator: (call: grpc.ServerUnaryCall<WireAdminRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const { grant, payload } = await admin<WireRemoveNodeRequest>("RemoveCoordinator", call.request);
        return o.peer.removeCoordinator(grant, payload.vpnIp);
      })().then((r) => cb(null, r), fail("RemoveCoordinator", cb));
    },

    JoinCluster: (call: grpc.ServerUnaryCall<{ coordinatorVpnIp: string; callerProof: WireCallerProof | null }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => o.peer.joinCluster(callerOf(call, call.request.callerProof), call.request.coordinatorVpnIp))
        .then((v) => cb(null, { resourceVersion: v }), fail("JoinCluster", cb));
    },

    TriggerNodeUpdate: (call: grpc.ServerUnaryCall<{ callerProof: WireCallerProof | null }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => o.peer.triggerNodeUpdate(callerOf(call, call.request.callerProof)))
        .then((v) => cb(null, { resourceVersion: v }), fail("TriggerNodeUpdate", cb));
    },

    GetPeerVPNPublicKey: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      o.peer.getVPNPublicKey().then((k) => cb(null, { vpnPubKey: Buffer.from(k, "base64") }), fail("GetPeerVPNPublicKey", cb));
    },

    RequestStateDiskKey: (call: grpc.ServerUnaryCall<{ diskUuid: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => o.peer.requestStateDiskKey(call.request.diskUuid))
        .then(() => cb(null, {}), fail("RequestStateDiskKey", cb));
    },

    PushStateDiskKey: (call: grpc.ServerUnaryCall<{ diskUuid: string; stateDiskKey: Buffer; callerProof: WireCallerProof | null }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        checkDiskUUID(call.request.diskUuid, "diskUUID");
        if (call.request.stateDiskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${call.request.stateDiskKey.length}`);
        await o.peer.receiveStateDiskKey(callerOf(call, call.request.callerProof), call.request.diskUuid, call.request.stateDiskKey);
      })().then(() => cb(null, {}), fail("PushStateDiskKey", cb));
    },

    RecoverStateDiskKey: (call: grpc.ServerUnaryCall<{ diskUuid: string; stateDiskKey: Buffer; recoverySignature: Buffer }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const r = call.request;
        checkDiskUUID(r.diskUuid, "diskUUID");
        if (r.stateDiskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${r.stateDiskKey.length}`);
        if (r.recoverySignature.length !== connectionSignatureBytes) {
          throw new InvalidArgumentError(`recoverySignature: must be ${connectionSignatureBytes} bytes, got ${r.recoverySignature.length}`);
        }
        await o.peer.recoverStateDiskKey(o.connections.keyingMaterial(call.getPeer()), r.diskUuid, r.stateDiskKey, r.recoverySignature);
      })().then(() => cb(null, {}), fail("RecoverStateDiskKey", cb));
    },
  });
  return server;
}
