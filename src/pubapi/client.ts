import * as grpc from "@grpc/grpc-js";
import type { Issuer, Validator } from "../attestation/attestation.js";
import type { CoordinatorCredential } from "../core/coordinator-auth.js";
import { CoreError, InvalidArgumentError } from "../core/errors.js";
import type { CoordinatorJoinHandlers, NodeActivationRequest, PeerClient } from "../core/remote.js";
import { runActivateAsAdditionalCoordinator } from "./activate-coordinator.js";
import { keyFromWire } from "../rpc/peer-wire.js";
import { channelOptions, pubapiService } from "../rpc/proto.js";
import { unaryCall, type UnaryMethod, type UnaryRequest, type UnaryResponse } from "../rpc/status.js";
import { ProvenChannel } from "./connect.js";
import { pubapiError } from "./errors.js";
import type { PubAPIGrpcClient, WireCallerProof } from "./messages.js";
import { runActivationCall } from "./initial-request.js";

/** PubAPIClientOptions configure a PubAPIClient. */
export interface PubAPIClientOptions {
  /** validators verify the callee's attestation (aTLS); activation additionally demands a fresh peer. */
  validators: readonly Validator[];
  /** issuer makes this peer's caller proofs (attestation documents bound to each connection). */
  issuer: Issuer;
  /** callTimeoutMs bounds unary calls (default 30 s). */
  callTimeoutMs?: number;
  /** activationTimeoutMs bounds one ActivateAsNode exchange (default 120 s). */
  activationTimeoutMs?: number;
}

/** newPubAPIClient opens a pubapi client (a grpc-js channel) to endpoint; close() it when done. */
export function newPubAPIClient(endpoint: string, credentials: grpc.ChannelCredentials): PubAPIGrpcClient {
  const Ctor = pubapiService();
  return new Ctor(endpoint, credentials, channelOptions);
}

/**
 * PubAPIClient is a Coordinator's PeerClient over the pubapi: every call runs over aTLS, so it
 * reaches only peers whose attestation verifies, and carries a caller proof bound to the connection
 * it travels on. Channels to activated peers are cached per endpoint; close() releases them. Safe
 * for concurrent use.
 */
export class PubAPIClient implements PeerClient {
  readonly #o: PubAPIClientOptions;
  readonly #channels = new Map<string, ProvenChannel>();

  constructor(options: PubAPIClientOptions) {
    if (options.validators.length === 0) throw new RangeError("PubAPIClient: at least one validator is required");
    this.#o = options;
  }

  async activateAsNode(
    endpoint: string,
    req: NodeActivationRequest,
    diskKey: (uuid: string) => Promise<Uint8Array>,
  ): Promise<{ vpnPubKey: string; wgPort: number }> {
    const timeoutMs = this.#o.activationTimeoutMs ?? 120_000;
    try {
      return await runActivationCall(
        new ProvenChannel(endpoint, this.#o.validators, this.#o.issuer, true),
        req,
        timeoutMs,
        (client, options) => client.ActivateAsNode(options),
        async (call, reader) => {
          const m1 = await reader.next("state_disk_uuid", timeoutMs);
          if (m1.response !== "stateDiskUuid") throw new InvalidArgumentError(`ActivateAsNode: expected state_disk_uuid, got ${m1.response ?? "an empty message"}`);
          const key = await diskKey(m1.stateDiskUuid ?? "");
          call.write({ stateDiskKey: Buffer.from(key) });
          const m2 = await reader.next("node_vpn_pub_key", timeoutMs);
          if (m2.response !== "nodeVpn" || !m2.nodeVpn) throw new InvalidArgumentError(`ActivateAsNode: expected node_vpn_pub_key, got ${m2.response ?? "an empty message"}`);
          const wgPort = m2.nodeVpn.wgPort;
          if (!Number.isInteger(wgPort) || wgPort < 1 || wgPort > 65535) throw new InvalidArgumentError(`nodeVPN.wgPort: must be 1-65535, got ${wgPort}`);
          return { vpnPubKey: keyFromWire(m2.nodeVpn.nodeVpnPubKey, "nodeVPNPubKey"), wgPort };
        },
      );
    } catch (err) {
      throw clientError(err, `ActivateAsNode ${endpoint}`);
    }
  }

  async joinCluster(endpoint: string, coordinatorVPNIP: string, credential: CoordinatorCredential): Promise<{ resourceVersion: number }> {
    const res = await this.#proven(endpoint, "JoinCluster", credential, (callerProof) => ({ coordinatorVpnIp: coordinatorVPNIP, callerProof }));
    return { resourceVersion: res.resourceVersion };
  }

  async triggerNodeUpdate(endpoint: string, credential: CoordinatorCredential): Promise<void> {
    await this.#proven(endpoint, "TriggerNodeUpdate", credential, (callerProof) => ({ callerProof }));
  }

  async getPeerVPNPublicKey(endpoint: string): Promise<string> {
    const res = await this.#proven(endpoint, "GetPeerVPNPublicKey", undefined, () => ({}));
    return keyFromWire(res.vpnPubKey, "vpnPubKey");
  }

  async pushStateDiskKey(endpoint: string, diskUUID: string, key: Uint8Array, credential: CoordinatorCredential): Promise<void> {
    await this.#proven(endpoint, "PushStateDiskKey", credential, (callerProof) => ({ diskUuid: diskUUID, stateDiskKey: Buffer.from(key), callerProof }));
  }

  async requestStateDiskKey(endpoint: string, diskUUID: string): Promise<void> {
    await this.#proven(endpoint, "RequestStateDiskKey", undefined, () => ({ diskUuid: diskUUID }));
  }

  async activateAsAdditionalCoordinator(endpoint: string, req: NodeActivationRequest, handlers: CoordinatorJoinHandlers): Promise<void> {
    try {
      // Promotion waits for the new etcd member to catch up: allow for it beyond one activation.
      await runActivateAsAdditionalCoordinator(endpoint, this.#o.validators, this.#o.issuer, req, handlers, 2 * (this.#o.activationTimeoutMs ?? 120_000));
    } catch (err) {
      throw clientError(err, `ActivateAsAdditionalCoordinator ${endpoint}`);
    }
  }

  /** close releases every cached channel. */
  close(): void {
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }

  /**
   * #proven runs a unary call on the endpoint's cached channel. With a credential (calls a
   * Coordinator makes of a Node) `build` gets a caller proof for the connection to put in the
   * request; without one it gets null.
   */
  async #proven<K extends UnaryMethod<PubAPIGrpcClient>>(
    endpoint: string,
    method: K,
    credential: CoordinatorCredential | undefined,
    build: (proof: WireCallerProof | null) => UnaryRequest<PubAPIGrpcClient, K>,
  ): Promise<UnaryResponse<PubAPIGrpcClient, K>> {
    let channel = this.#channels.get(endpoint);
    if (!channel) {
      channel = new ProvenChannel(endpoint, this.#o.validators, this.#o.issuer, false);
      this.#channels.set(endpoint, channel);
    }
    const timeoutMs = this.#o.callTimeoutMs ?? 30_000;
    try {
      const proof = credential ? await channel.proof(Date.now() + timeoutMs, credential) : null;
      return await unaryCall(channel.client, method, build(proof), timeoutMs);
    } catch (err) {
      throw clientError(err, `${method} ${endpoint}`);
    }
  }
}

/** clientError names the operation on any failure, keeping its code. */
function clientError(err: unknown, operation: string): CoreError {
  if (err instanceof CoreError && !err.message.startsWith(operation)) return new CoreError(err.code, `${operation}: ${err.message}`, { cause: err, retryable: err.retryable });
  return pubapiError(err, operation);
}
