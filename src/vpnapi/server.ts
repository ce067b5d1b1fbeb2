import * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import { offsetOf } from "../core/ip-pool.js";
import type { Logger } from "../core/logger.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import { checkIP } from "../core/validate.js";
import { peerToWire } from "../rpc/peer-wire.js";
import { maxMessageBytes, serviceOf } from "../rpc/proto.js";
import { toStatus } from "../rpc/status.js";

/** maxDataKeyBytes bounds GetDataKey's length. */
export const maxDataKeyBytes = 64;

/**
 * createVPNAPIServer returns a grpc-js Server with the vpnapi bound to a Coordinator peer. The
 * caller binds it to the Coordinator's VPN IP only (insecure credentials: WireGuard authenticates
 * and encrypts) and owns its shutdown.
 */
export function createVPNAPIServer(peer: MeshPeer, logger: Logger): grpc.Server {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 * 1024, "grpc.max_send_message_length": maxMessageBytes });
  const fail = (op: string, cb: grpc.sendUnaryData<unknown>) => (err: unknown) => cb(toStatus(err, op, logger) as grpc.ServiceError, null);
  server.addService(serviceOf("vpnapi").service, {
    GetUpdate: (call: grpc.ServerUnaryCall<{ resourceVersion: number; nodeVpnIp: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const v = call.request.resourceVersion;
        if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError("resourceVersion: must be a non-negative integer");
        const claimed = call.request.nodeVpnIp === "" ? undefined : checkIP(call.request.nodeVpnIp, "nodeVPNIP");
        const update = await peer.getUpdate(v, sourceVPNIP(call.getPeer()) ?? claimed);
        return { resourceVersion: update.resourceVersion, changed: update.peers !== undefined, peers: (update.peers ?? []).map(peerToWire) };
      })().then((r) => cb(null, r), fail("GetUpdate", cb));
    },
    GetDataKey: (call: grpc.ServerUnaryCall<{ dataKeyId: string; length: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const { dataKeyId, length } = call.request;
        if (!Number.isInteger(length) || length < 16 || length > maxDataKeyBytes) {
          throw new InvalidArgumentError(`length: must be 16 to ${maxDataKeyBytes} bytes, got ${length}`);
        }
        return { dataKey: await peer.getDataKey(dataKeyId, length) };
      })().then((r) => cb(null, r), fail("GetDataKey", cb));
    },
    GetPeers: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      (async () => {
        const update = await peer.getUpdate(-1);
        const seen = peer.lastSeen();
        return {
          resourceVersion: update.resourceVersion,
          peers: (update.peers ?? []).map((p) => ({ peer: peerToWire(p), lastSeenUnixMs: seen.get(p.vpnIP) ?? 0 })),
        };
      })().then((r) => cb(null, r), fail("GetPeers", cb));
    },
  });
  return server;
}

/** sourceVPNIP extracts the caller's address from a grpc-js peer string when it is a VPN address. */
function sourceVPNIP(peer: string): string | undefined {
  const m = /^(?:ipv4:)?(\d+\.\d+\.\d+\.\d+):\d+$/.exec(peer);
  return m && offsetOf(m[1]!) !== undefined ? m[1] : undefined;
}
