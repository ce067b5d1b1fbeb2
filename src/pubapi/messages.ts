import type { WirePeer } from "../rpc/peer-wire.js";

/** WireFailure is the proto NodeFailure message. */
export interface WireFailure {
  endpoint: string;
  error: string;
}

/** WireAdminConfig is the proto AdminConfig message. */
export interface WireAdminConfig {
  adminVpnIp: string;
  coordinator: WirePeer | null;
  ownerId: Buffer;
  clusterId: Buffer;
  peers: WirePeer[];
  failedNodes: WireFailure[];
}

/** WireInitialRequest is the proto ActivateAsNodeInitialRequest message. */
export interface WireInitialRequest {
  nodeVpnIp: string;
  peers: WirePeer[];
  ownerId: Buffer;
  clusterId: Buffer;
  coordinatorVpnIps: string[];
  coordinatorPublicEndpoints: string[];
}

/** WireActivateAsNodeRequest is one client message of the ActivateAsNode stream. */
export interface WireActivateAsNodeRequest {
  request?: "initialRequest" | "stateDiskKey";
  initialRequest?: WireInitialRequest | null;
  stateDiskKey?: Buffer;
}

/** WireActivateAsNodeResponse is one server message of the ActivateAsNode stream. */
export interface WireActivateAsNodeResponse {
  response?: "stateDiskUuid" | "nodeVpn";
  stateDiskUuid?: string;
  nodeVpn?: { nodeVpnPubKey: Buffer; wgPort: number } | null;
}

/** WireActivationResult is the proto ActivationResult message. */
export interface WireActivationResult {
  activated: WirePeer[];
  failedNodes: WireFailure[];
}
