import * as grpc from "@grpc/grpc-js";
import type { ActivationResult } from "../core/coordinator.js";
import type { CallerContext } from "../core/caller.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import { checkDiskUUID } from "../core/keys.js";
import { connectionSignatureBytes } from "../core/coordinator-auth.js";
import type { AdminGrant } from "../core/admin-auth.js";
import { peerToWire } from "../rpc/peer-wire.js";
import { adminPayloadCodec, maxMessageBytes, pubapiService, type AdminMethod, type AdminPayload } from "../rpc/proto.js";
import { serveActivateAsAdditionalCoordinator } from "./activate-coordinator.js";
import { auditLog } from "../rpc/audit.js";
import { callerRateLimit, type CallerRateLimitOptions } from "../rpc/rate-limit.js";
import { toStatus, unaryHandler } from "../rpc/status.js";
import { serveActivateAsNode } from "./activate-node-server.js";
import type { PubAPIHandlers, WireAdminRequest, WireCallerProof, WireFailure } from "./messages.js";

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
  const unary = <Req, Res>(op: string, fn: (call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>) => unaryHandler(op, log, fn);
  const failStream = (op: string, call: { emit(event: "error", err: unknown): boolean }) => (err: unknown) => call.emit("error", toStatus(err, op, log));
  /** callerOf binds a caller proof to the call's own connection (its keying material as this side sees it). */
  const callerOf = (call: { getPeer(): string }, proof: WireCallerProof | null | undefined): CallerContext => ({
    ekm: o.connections.keyingMaterial(call.getPeer()),
    proof: proof ? { oid: proof.oid, document: proof.document, clusterSignature: proof.clusterSignature } : undefined,
  });
  /** activateMore serves an admin's activation of more peers: progress lines as they come, then the result. */
  const activateMore = <M extends "ActivateAdditionalNodes" | "ActivateAdditionalCoordinator">(
    method: M,
    run: (grant: AdminGrant, payload: AdminPayload<M>, progress: (message: string) => void) => Promise<ActivationResult>,
  ): PubAPIHandlers[M] =>
    (call) => {
      (async () => {
        const { grant, payload } = await admin(method, call.request);
        const res = await run(grant, payload, (message) => {
          if (!call.cancelled) call.write({ log: { message } });
        });
        call.write({ result: { activated: res.activated.map(peerToWire), failedNodes: res.failed } });
        call.end();
      })().catch(failStream(method, call));
    };
  /** admin verifies an admin request and only then decodes its payload. */
  const admin = async <M extends AdminMethod>(method: M, req: WireAdminRequest): Promise<{ grant: AdminGrant; payload: AdminPayload<M> }> => {
    const grant = await o.peer.authorizeAdmin({ method, challenge: req.challenge, request: req.request, signature: req.signature }, method);
    let payload: AdminPayload<M>;
    try {
      payload = adminPayloadCodec(method).deserialize(req.request);
    } catch (err) {
      throw new InvalidArgumentError(`${method}: request: not a valid payload`, { cause: err });
    }
    return { grant, payload };
  };

  const handlers: PubAPIHandlers = {
    GetState: unary("GetState", () => ({ state: o.peer.state, waitingDiskUuid: o.peer.waitingDiskUUID ?? "" })),

    ActivateAsCoordinator: (call) => {
      const r = call.request;
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

    ActivateAsNode: (call) => {
      serveActivateAsNode(call, { peer: o.peer, timeoutMs: o.streamMessageTimeoutMs ?? 60_000, callerOf: (proof) => callerOf(call, proof) }).catch(failStream("ActivateAsNode", call));
    },

    GetAdminChallenge: unary("GetAdminChallenge", () => ({ challenge: o.peer.getAdminChallenge() })),

    ActivateAdditionalNodes: activateMore("ActivateAdditionalNodes", (grant, p, progress) => o.peer.activateAdditionalNodes(grant, p.nodePublicEndpoints, progress)),

    ActivateAdditionalCoordinator: activateMore("ActivateAdditionalCoordinator", (grant, p, progress) => o.peer.activateAdditionalCoordinators(grant, p.coordinatorPublicEndpoints, progress)),

    ActivateAsAdditionalCoordinator: (call) => {
      serveActivateAsAdditionalCoordinator(call, { peer: o.peer, timeoutMs: o.streamMessageTimeoutMs ?? 60_000, callerOf: (proof) => callerOf(call, proof) }).catch(failStream("ActivateAsAdditionalCoordinator", call));
    },

    RemoveNode: unary("RemoveNode", async (call) => {
      const { grant, payload } = await admin("RemoveNode", call.request);
      return o.peer.removeNode(grant, payload.vpnIp);
    }),

    RemoveCoordinator: unary("RemoveCoordinator", async (call) => {
      const { grant, payload } = await admin("RemoveCoordinator", call.request);
      return o.peer.removeCoordinator(grant, payload.vpnIp);
    }),

    JoinCluster: unary("JoinCluster", async (call) => ({
      resourceVersion: await o.peer.joinCluster(callerOf(call, call.request.callerProof), call.request.coordinatorVpnIp),
    })),

    TriggerNodeUpdate: unary("TriggerNodeUpdate", async (call) => ({ resourceVersion: await o.peer.triggerNodeUpdate(callerOf(call, call.request.callerProof)) })),

    GetPeerVPNPublicKey: unary("GetPeerVPNPublicKey", async () => ({ vpnPubKey: Buffer.from(await o.peer.getVPNPublicKey(), "base64") })),

    RequestStateDiskKey: unary("RequestStateDiskKey", async (call) => {
      await o.peer.requestStateDiskKey(call.request.diskUuid);
      return {};
    }),

    PushStateDiskKey: unary("PushStateDiskKey", async (call) => {
      const r = call.request;
      checkDiskUUID(r.diskUuid, "diskUUID");
      if (r.stateDiskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${r.stateDiskKey.length}`);
      await o.peer.receiveStateDiskKey(callerOf(call, r.callerProof), r.diskUuid, r.stateDiskKey);
      return {};
    }),

    RecoverStateDiskKey: unary("RecoverStateDiskKey", async (call) => {
      const r = call.request;
      checkDiskUUID(r.diskUuid, "diskUUID");
      if (r.stateDiskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${r.stateDiskKey.length}`);
      if (r.recoverySignature.length !== connectionSignatureBytes) {
        throw new InvalidArgumentError(`recoverySignature: must be ${connectionSignatureBytes} bytes, got ${r.recoverySignature.length}`);
      }
      await o.peer.recoverStateDiskKey(o.connections.keyingMaterial(call.getPeer()), r.diskUuid, r.stateDiskKey, r.recoverySignature);
      return {};
    }),
  };
  server.addService(pubapiService().service, handlers);
  return server;
}
