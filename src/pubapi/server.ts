import * as grpc from "@grpc/grpc-js";
import type { ActivationResult } from "../core/coordinator.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import { checkDiskUUID } from "../core/keys.js";
import { peerToWire } from "../rpc/peer-wire.js";
import { maxMessageBytes, serviceOf } from "../rpc/proto.js";
import { callerRateLimit, type CallerRateLimitOptions } from "../rpc/rate-limit.js";
import { toStatus } from "../rpc/status.js";
import { serveActivateAsNode } from "./activate-node-server.js";
import type { WireFailure } from "./messages.js";

/** PubAPIServerOptions wires the public API to a peer. */
export interface PubAPIServerOptions {
  peer: MeshPeer;
  logger: Logger;
  /** streamMessageTimeoutMs bounds the wait for each ActivateAsNode message (default 60 s). */
  streamMessageTimeoutMs?: number;
  /** callerRateLimit bounds calls per remote IP (RESOURCE_EXHAUSTED past it); undefined: its defaults. */
  callerRateLimit?: CallerRateLimitOptions;
}

/**
 * createPubAPIServer returns a grpc-js Server with the pubapi service bound to `peer`. The caller
 * binds it (with aTLS server credentials) and owns its shutdown.
 */
export function createPubAPIServer(o: PubAPIServerOptions): grpc.Server {
  const server = new grpc.Server({ "grpc.max_receive_message_length": maxMessageBytes, interceptors: [callerRateLimit(o.callerRateLimit)] });
  const log = o.logger;
  const fail = <T>(op: string, cb: grpc.sendUnaryData<T>) => (err: unknown) => cb(toStatus(err, op, log) as grpc.ServiceError, null);
  const failStream = (op: string, call: grpc.ServerWritableStream<unknown, unknown>) => (err: unknown) =>
    call.emit("error", toStatus(err, op, log));

  server.addService(serviceOf("pubapi").service, {
    GetState: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { state: o.peer.state }),

    ActivateAsCoordinator: (call: grpc.ServerWritableStream<Record<string, unknown>, unknown>) => {
      const r = call.request as { adminVpnPubKey: Buffer; nodePublicEndpoints: string[]; coordinatorPublicEndpoints: string[]; masterSecret: Buffer };
      const write = (message: string): void => {
        if (!call.cancelled) call.write({ log: { message } });
      };
      (async () => {
        if (r.adminVpnPubKey.length !== 32) throw new InvalidArgumentError(`adminVPNPubKey: must be 32 bytes, got ${r.adminVpnPubKey.length}`);
        const cfg = await o.peer.activateAsCoordinator(
          {
            adminVPNPubKey: r.adminVpnPubKey.toString("base64"),
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

    ActivateAsNode: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
      serveActivateAsNode(call, o.peer, o.streamMessageTimeoutMs ?? 60_000).catch((err: unknown) =>
        call.emit("error", toStatus(err, "ActivateAsNode", log)),
      ),

    ActivateAdditionalNodes: (call: grpc.ServerWritableStream<{ nodePublicEndpoints: string[] }, unknown>) => {
      (async () => {
        const res: ActivationResult = await o.peer.activateAdditionalNodes(call.request.nodePublicEndpoints, (message) => {
          if (!call.cancelled) call.write({ log: { message } });
        });
        call.write({ result: { activated: res.activated.map(peerToWire), failedNodes: res.failed } });
        call.end();
      })().catch(failStream("ActivateAdditionalNodes", call as grpc.ServerWritableStream<unknown, unknown>));
    },

    JoinCluster: (call: grpc.ServerUnaryCall<{ coordinatorVpnIp: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      o.peer.joinCluster(call.request.coordinatorVpnIp).then((v) => cb(null, { resourceVersion: v }), fail("JoinCluster", cb));
    },

    TriggerNodeUpdate: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      o.peer.triggerNodeUpdate().then((v) => cb(null, { resourceVersion: v }), fail("TriggerNodeUpdate", cb));
    },

    GetPeerVPNPublicKey: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      o.peer.getVPNPublicKey().then((k) => cb(null, { vpnPubKey: Buffer.from(k, "base64") }), fail("GetPeerVPNPublicKey", cb));
    },

    RequestStateDiskKey: (call: grpc.ServerUnaryCall<{ diskUuid: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      o.peer.requestStateDiskKey(call.request.diskUuid).then(() => cb(null, {}), fail("RequestStateDiskKey", cb));
    },

    PushStateDiskKey: (call: grpc.ServerUnaryCall<{ diskUuid: string; stateDiskKey: Buffer }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        checkDiskUUID(call.request.diskUuid, "diskUUID");
        if (call.request.stateDiskKey.length !== 32) throw new InvalidArgumentError(`stateDiskKey: must be 32 bytes, got ${call.request.stateDiskKey.length}`);
        await o.peer.receiveStateDiskKey(call.request.diskUuid, call.request.stateDiskKey);
      })().then(() => cb(null, {}), fail("PushStateDiskKey", cb));
    },
  });
  return server;
}
