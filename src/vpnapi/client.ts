import * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import type { PeerRecord } from "../core/peer.js";
import { checkPeerSet } from "../core/peer.js";
import type { CoordinatorClient, PeerUpdate, UpdateStream } from "../core/remote.js";
import { peerFromWire } from "../rpc/peer-wire.js";
import { channelOptions, vpnapiService } from "../rpc/proto.js";
import type { APIClient as VPNAPIGrpcClient } from "../gen/attestedmesh/vpnapi/API.js";
import { fromServiceError, unaryCall, type UnaryMethod, type UnaryRequest, type UnaryResponse } from "../rpc/status.js";
import { WatchClientStream } from "./watch.js";

/** vpnapiPort is where Coordinators serve the vpnapi on their VPN IP (DESIGN.md). */
export const vpnapiPort = 9027;

/** PeerStatus is one row of GetPeers. */
export interface PeerStatus {
  peer: PeerRecord;
  /** lastSeenMs is the last poll time (ms since epoch), or 0 when the peer never polled. */
  lastSeenMs: number;
  /** appliedVersion is the version the peer last acknowledged applying (0: never). */
  appliedVersion: number;
  /** appliedMs is when it acknowledged it (ms since epoch), or 0. */
  appliedMs: number;
}

/**
 * VPNAPIClient is a Node's (or an admin's) vpnapi client: one channel to one Coordinator, reused
 * for every poll until close(). Safe for concurrent use.
 */
export class VPNAPIClient implements CoordinatorClient {
  readonly #client: VPNAPIGrpcClient;
  readonly #target: string;
  readonly #timeoutMs: number;

  /**
   * constructor opens a channel to target (HOST:PORT) inside the VPN; timeoutMs bounds each unary
   * call; extraOptions add grpc-js channel options (benches: a connection per client).
   */
  constructor(target: string, timeoutMs = 10_000, extraOptions: grpc.ChannelOptions = {}) {
    const Ctor = vpnapiService();
    this.#client = new Ctor(target, grpc.credentials.createInsecure(), { ...channelOptions, ...extraOptions });
    this.#target = target;
    this.#timeoutMs = timeoutMs;
  }

  async getUpdate(resourceVersion: number, nodeVPNIP: string): Promise<PeerUpdate> {
    const res = await this.#call("GetUpdate", { resourceVersion, nodeVpnIp: nodeVPNIP });
    if (!Number.isSafeInteger(res.resourceVersion) || res.resourceVersion < 0) throw new InvalidArgumentError("GetUpdate: bad resourceVersion in reply");
    if (!res.changed) return { resourceVersion: res.resourceVersion, peers: undefined };
    return { resourceVersion: res.resourceVersion, peers: checkPeerSet(res.peers.map((p, i) => peerFromWire(p, `peers[${i}]`)), "peers") };
  }

  /** watchUpdates opens a WatchUpdates stream (no deadline: it lives until close() or a failure). */
  watchUpdates(appliedVersion: number, nodeVPNIP: string): UpdateStream {
    const call = this.#client.WatchUpdates();
    return new WatchClientStream(call, appliedVersion, nodeVPNIP, this.#target);
  }

  async getDataKey(dataKeyID: string, length: number): Promise<Buffer> {
    const res = await this.#call("GetDataKey", { dataKeyId: dataKeyID, length });
    if (res.dataKey.length !== length) throw new InvalidArgumentError(`GetDataKey: got ${res.dataKey.length} bytes, asked for ${length}`);
    return res.dataKey;
  }

  /** getPeers returns the peer set with last-seen times. */
  async getPeers(): Promise<{ resourceVersion: number; peers: PeerStatus[] }> {
    const res = await this.#call("GetPeers", {});
    return {
      resourceVersion: res.resourceVersion,
      peers: res.peers.map((p, i) => ({
        peer: peerFromWire(p.peer, `peers[${i}]`),
        lastSeenMs: Number(p.lastSeenUnixMs),
        appliedVersion: Number(p.appliedVersion),
        appliedMs: Number(p.appliedUnixMs),
      })),
    };
  }

  close(): void {
    this.#client.close();
  }

  async #call<K extends UnaryMethod<VPNAPIGrpcClient>>(method: K, req: UnaryRequest<VPNAPIGrpcClient, K>): Promise<UnaryResponse<VPNAPIGrpcClient, K>> {
    try {
      return await unaryCall(this.#client, method, req, this.#timeoutMs);
    } catch (err) {
      throw fromServiceError(err, `vpnapi ${method} ${this.#target}`);
    }
  }
}
