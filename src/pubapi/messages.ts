import type { WirePeer } from "../rpc/peer-wire.js";

/** WireFailure is the proto NodeFailure message. */
export interface WireFailure {
  endpoint: string;
  error: string;
  marked: boolean;
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
  coordinatorAuthPubKey: Buffer;
  callerProof: WireCallerProof | null;
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

/** WireCallerProof is the proto CallerProof message. */
export interface WireCallerProof {
  oid: string;
  document: Buffer;
  clusterSignature: Buffer;
}

/** WireAdminRequest is the proto AdminRequest message. */
export interface WireAdminRequest {
  request: Buffer;
  challenge: Buffer;
  signature: Buffer;
}

/** WireActivateAdditionalNodesRequest is the payload of an admin-signed ActivateAdditionalNodes. */
export interface WireActivateAdditionalNodesRequest {
  nodePublicEndpoints: string[];
}

/** WireRemoveNodeRequest is the payload of an admin-signed RemoveNode. */
export interface WireRemoveNodeRequest {
  vpnIp: string;
}
