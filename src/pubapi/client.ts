import * as grpc from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.js";
import type { NodeActivationRequest, PeerClient } from "../core/remote.js";
import { keyFromWire, peerToWire } from "../rpc/peer-wire.js";
import { channelOptions, serviceOf } from "../rpc/proto.js";
import { unaryCall } from "../rpc/status.js";
import { pubapiError } from "./errors.js";
import { StreamReader } from "../rpc/stream-reader.js";
import type { WireActivateAsNodeRequest, WireActivateAsNodeResponse } from "./messages.js";

/** PubAPIClientOptions configures a PubAPIClient. */
export interface PubAPIClientOptions {
  /** activationCredentials verify a FRESH peer's attestation (aTLS with requireFresh). */
  activationCredentials: grpc.ChannelCredentials;
  /** credentials verify an activated peer's attestation (aTLS). */
  credentials: grpc.ChannelCredentials;
  /** callTimeoutMs bounds unary calls (default 30 s). */
  callTimeoutMs?: number;
  /** activationTimeoutMs bounds one ActivateAsNode exchange (default 120 s). */
  activationTimeoutMs?: number;
}

/** newPubAPIClient opens a pubapi client (a grpc-js channel) to endpoint; close() it when done. */
export function newPubAPIClient(endpoint: string, credentials: grpc.ChannelCredentials): grpc.Client {
  const Ctor = serviceOf("pubapi");
  return new Ctor(endpoint, credentials, channelOptions);
}

/**
 * PubAPIClient is a Coordinator's PeerClient over the pubapi: every call runs over aTLS, so it
 * reaches only peers whose attestation verifies. Channels to activated peers are cached per
 * endpoint; close() releases them. Safe for concurrent use.
 */
export class PubAPIClient implements PeerClient {
  readonly #o: PubAPIClientOptions;
  readonly #clients = new Map<string, grpc.Client>();

  constructor(options: PubAPIClientOptions) {
    this.#o = options;
  }

  async activateAsNode(
    endpoint: string,
    req: NodeActivationRequest,
    diskKey: (uuid: string) => Promise<Uint8Array>,
  ): Promise<{ vpnPubKey: string; wgPort: number }> {
    const client = newPubAPIClient(endpoint, this.#o.activationCredentials);
    const timeoutMs = this.#o.activationTimeoutMs ?? 120_000;
    const call = (client as unknown as { ActivateAsNode(o: grpc.CallOptions): grpc.ClientDuplexStream<WireActivateAsNodeRequest, WireActivateAsNodeResponse> }).ActivateAsNode({
      deadline: Date.now() + timeoutMs,
    });
    const reader = new StreamReader<WireActivateAsNodeResponse>(call);
    try {
      call.write({
        initialRequest: {
          nodeVpnIp: req.nodeVPNIP,
          peers: req.peers.map(peerToWire),
          ownerId: req.ownerID,
          clusterId: req.clusterID,
          coordinatorVpnIps: req.coordinatorVPNIPs,
          coordinatorPublicEndpoints: req.coordinatorEndpoints,
        },
      });
      const m1 = await reader.next("state_disk_uuid", timeoutMs);
      if (m1.response !== "stateDiskUuid") throw new InvalidArgumentError(`ActivateAsNode: expected state_disk_uuid, got ${m1.response ?? "an empty message"}`);
      const key = await diskKey(m1.stateDiskUuid ?? "");
      call.write({ stateDiskKey: Buffer.from(key) });
      const m2 = await reader.next("node_vpn_pub_key", timeoutMs);
      if (m2.response !== "nodeVpn" || !m2.nodeVpn) throw new InvalidArgumentError(`ActivateAsNode: expected node_vpn_pub_key, got ${m2.response ?? "an empty message"}`);
      const wgPort = m2.nodeVpn.wgPort;
      if (!Number.isInteger(wgPort) || wgPort < 1 || wgPort > 65535) throw new InvalidArgumentError(`nodeVPN.wgPort: must be 1-65535, got ${wgPort}`);
      const vpnPubKey = keyFromWire(m2.nodeVpn.nodeVpnPubKey, "nodeVPNPubKey");
      call.end();
      return { vpnPubKey, wgPort };
    } catch (err) {
      call.cancel();
      throw pubapiError(err, `ActivateAsNode ${endpoint}`);
    } finally {
      client.close();
    }
  }

  async joinCluster(endpoint: string, coordinatorVPNIP: string): Promise<{ resourceVersion: number }> {
    const res = await this.#unary<{ resourceVersion: number }>(endpoint, "JoinCluster", { coordinatorVpnIp: coordinatorVPNIP });
    return { resourceVersion: res.resourceVersion };
  }

  async triggerNodeUpdate(endpoint: string): Promise<void> {
    await this.#unary(endpoint, "TriggerNodeUpdate", {});
  }

  async getPeerVPNPublicKey(endpoint: string): Promise<string> {
    const res = await this.#unary<{ vpnPubKey: Buffer }>(endpoint, "GetPeerVPNPublicKey", {});
    return keyFromWire(res.vpnPubKey, "vpnPubKey");
  }

  async pushStateDiskKey(endpoint: string, diskUUID: string, key: Uint8Array): Promise<void> {
    await this.#unary(endpoint, "PushStateDiskKey", { diskUuid: diskUUID, stateDiskKey: Buffer.from(key) });
  }

  async requestStateDiskKey(endpoint: string, diskUUID: string): Promise<void> {
    await this.#unary(endpoint, "RequestStateDiskKey", { diskUuid: diskUUID });
  }

  /** close releases every cached channel. */
  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }

  async #unary<Res>(endpoint: string, method: string, req: unknown): Promise<Res> {
    let client = this.#clients.get(endpoint);
    if (!client) {
      client = newPubAPIClient(endpoint, this.#o.credentials);
      this.#clients.set(endpoint, client);
    }
    try {
      return await unaryCall<unknown, Res>(client, method, req, this.#o.callTimeoutMs ?? 30_000);
    } catch (err) {
      throw pubapiError(err, `${method} ${endpoint}`);
    }
  }
}
