import * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import { offsetOf } from "../core/ip-pool.js";
import type { Logger } from "../shared/logger.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import type { UpdateFeed } from "../core/update-feed.js";
import { checkIP } from "../core/validate.js";
import { peerToWire } from "../rpc/peer-wire.js";
import { maxMessageBytes, vpnapiService } from "../rpc/proto.js";
import type { APIHandlers as VPNAPIHandlers } from "../gen/attestedmesh/vpnapi/API.js";
import { auditLog } from "../rpc/audit.js";
import { unaryHandler } from "../rpc/status.js";
import { serveWatch } from "./watch.js";

/** maxDataKeyBytes bounds GetDataKey's length. */
export const maxDataKeyBytes = 64;

/** VPNAPIServerOptions tune createVPNAPIServer. */
export interface VPNAPIServerOptions {
  /**
   * callerVPNIP reads the caller's VPN IP from grpc-js's peer string (`call.getPeer()`); undefined
   * means "not a VPN caller". Undefined option: sourceVPNIP, the connection's source address, which
   * is authenticated because the vpnapi listens on the VPN IP inside WireGuard (cryptokey routing
   * admits a source only from the peer owning it) and meshd's nftables filter (vpnapi-filter.ts)
   * drops packets to it that did not arrive through WireGuard. Tests on loopback map it.
   */
  callerVPNIP?: (grpcPeer: string) => string | undefined;
  /** onPoll runs for every GetUpdate served (metrics). */
  onPoll?: () => void;
}

/** VPNAPIBackend is what the vpnapi serves from: a MeshPeer in meshd (Coordinators only answer). */
export type VPNAPIBackend = Pick<MeshPeer, "getUpdate" | "getDataKey" | "lastSeen"> & { updates(): UpdateFeed };

/**
 * createVPNAPIServer returns a grpc-js Server with the vpnapi bound to a Coordinator peer. The
 * caller binds it to the Coordinator's VPN IP only (insecure credentials: WireGuard authenticates
 * and encrypts), installs the vpnapi filter, and owns its shutdown. GetDataKey answers only
 * registered peers, identified by callerVPNIP.
 */
export function createVPNAPIServer(peer: VPNAPIBackend, logger: Logger, options: VPNAPIServerOptions = {}): grpc.Server {
  const callerOf = options.callerVPNIP ?? sourceVPNIP;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 64 * 1024,
    "grpc.max_send_message_length": maxMessageBytes,
    // Every call is audited; a Node's routine poll only at debug (meshd_polls_total counts them).
    interceptors: [auditLog(logger.child("audit"), { vpn: true, quiet: (m) => m === "GetUpdate" })],
  });
  const handlers: VPNAPIHandlers = {
    GetUpdate: unaryHandler("GetUpdate", logger, async (call) => {
      const v = call.request.resourceVersion;
      if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError("resourceVersion: must be a non-negative integer");
      const claimed = call.request.nodeVpnIp === "" ? undefined : checkIP(call.request.nodeVpnIp, "nodeVPNIP");
      const update = await peer.getUpdate(v, callerOf(call.getPeer()) ?? claimed);
      options.onPoll?.();
      return { resourceVersion: update.resourceVersion, changed: update.peers !== undefined, peers: (update.peers ?? []).map(peerToWire) };
    }),
    WatchUpdates: (call) => {
      serveWatch(call, () => peer.updates(), callerOf(call.getPeer()), logger);
    },
    GetDataKey: unaryHandler("GetDataKey", logger, async (call) => {
      const { dataKeyId, length } = call.request;
      if (!Number.isInteger(length) || length < 16 || length > maxDataKeyBytes) {
        throw new InvalidArgumentError(`length: must be 16 to ${maxDataKeyBytes} bytes, got ${length}`);
      }
      return { dataKey: await peer.getDataKey(dataKeyId, length, callerOf(call.getPeer())) };
    }),
    GetPeers: unaryHandler("GetPeers", logger, async () => {
      const update = await peer.getUpdate(-1);
      const seen = peer.lastSeen();
      const applied = peer.updates().acks.applied();
      return {
        resourceVersion: update.resourceVersion,
        peers: (update.peers ?? []).map((p) => {
          const a = applied.get(p.vpnIP);
          return { peer: peerToWire(p), lastSeenUnixMs: seen.get(p.vpnIP) ?? 0, appliedVersion: a?.appliedVersion ?? 0, appliedUnixMs: a?.atMs ?? 0 };
        }),
      };
    }),
  };
  server.addService(vpnapiService().service, handlers);
  return server;
}

/** sourceVPNIP extracts the caller's address from a grpc-js peer string ("10.118.0.11:4321", "[::ffff:10.118.0.11]:4321") when it is a VPN address. */
export function sourceVPNIP(peer: string): string | undefined {
  const m = /^(?:ipv4:)?(?:(\d+\.\d+\.\d+\.\d+)|\[::ffff:(\d+\.\d+\.\d+\.\d+)\]):\d+$/i.exec(peer);
  const ip = m?.[1] ?? m?.[2];
  return ip !== undefined && offsetOf(ip) !== undefined ? ip : undefined;
}
