import type { CoordinatorCredential } from "./coordinator-auth.js";
import type { PeerRecord } from "./peer.js";

/**
 * NodeActivationRequest is the first message a Coordinator sends a fresh peer to make it a Node.
 */
export interface NodeActivationRequest {
  nodeVPNIP: string;
  ownerID: Buffer;
  clusterID: Buffer;
  /** peers is the current peer set (without the Node), enough to reach the Coordinators through the VPN. */
  peers: PeerRecord[];
  coordinatorVPNIPs: string[];
  coordinatorEndpoints: string[];
  /**
   * coordinatorAuthPubKey is the cluster credential's public key (32 bytes, Ed25519): the Node keeps
   * it and from then on acts only for callers that sign its connection with the private half.
   */
  coordinatorAuthPubKey: Buffer;
}

/**
 * NodeExchange is the Node's side of the ActivateAsNode stream after the first message: the Node
 * sends its state-disk UUID ("" without a disk) and receives its disk key (empty without a disk).
 */
export interface NodeExchange {
  sendDiskUUID(uuid: string): Promise<Uint8Array>;
}

/**
 * PeerClient is how a Coordinator calls other peers' pubapi (implemented over aTLS in src/pubapi).
 * Every call verifies the callee's attestation first, and proves the caller to the callee on that
 * same connection: an attestation document bound to the connection's exported keying material and,
 * where a `credential` is given, the cluster credential's signature over it. Safe for concurrent use.
 */
export interface PeerClient {
  /**
   * activateAsNode runs the ActivateAsNode exchange with the peer at endpoint: it sends `request`,
   * calls `diskKey` with the disk UUID the Node reports, sends the key back and returns the
   * Node's WireGuard public key.
   */
  activateAsNode(
    endpoint: string,
    request: NodeActivationRequest,
    diskKey: (uuid: string) => Promise<Uint8Array>,
  ): Promise<{ vpnPubKey: string; wgPort: number }>;
  /** joinCluster asks a Node to reach the vpnapi through the VPN and apply a first update. */
  joinCluster(endpoint: string, coordinatorVPNIP: string, credential: CoordinatorCredential): Promise<{ resourceVersion: number }>;
  /** triggerNodeUpdate asks a Node to poll the vpnapi now. */
  triggerNodeUpdate(endpoint: string, credential: CoordinatorCredential): Promise<void>;
  /** getPeerVPNPublicKey asks a peer for its WireGuard public key. */
  getPeerVPNPublicKey(endpoint: string): Promise<string>;
  /** pushStateDiskKey delivers a disk key to a peer, after verifying the peer's attestation. */
  pushStateDiskKey(endpoint: string, diskUUID: string, key: Uint8Array, credential: CoordinatorCredential): Promise<void>;
  /**
   * requestStateDiskKey asks a Coordinator (whose attestation is verified) to push the key of
   * `diskUUID` back to the peer registered for that disk; it resolves once the push succeeded.
   */
  requestStateDiskKey(endpoint: string, diskUUID: string): Promise<void>;
  /**
   * activateAsAdditionalCoordinator runs the ActivateAsAdditionalCoordinator exchange with the fresh
   * peer at endpoint (its attestation verified, demanding a fresh peer) and resolves once it serves.
   */
  activateAsAdditionalCoordinator(endpoint: string, request: NodeActivationRequest, handlers: CoordinatorJoinHandlers): Promise<void>;
}

/** CoordinatorInfo is what a peer being activated as a Coordinator reports before it gets secrets. */
export interface CoordinatorInfo {
  /** diskUUID is its state disk's LUKS UUID, "" without a disk. */
  diskUUID: string;
  vpnPubKey: string;
  wgPort: number;
}

/** CoordinatorSecrets are what a new Coordinator gets once its evidence verified. Never log them. */
export interface CoordinatorSecrets {
  /** diskKey is its state-disk key (32 bytes; empty without a disk). */
  diskKey: Uint8Array;
  masterSecret: Uint8Array;
  /** storeJoin is StoreMembers.addMember's answer ("" without managed store members). */
  storeJoin: string;
}

/**
 * CoordinatorExchange is the new Coordinator's side of ActivateAsAdditionalCoordinator after the
 * first message: it reports its info and gets the secrets, then reports that its store member runs
 * and waits until the activating Coordinator promoted it.
 */
export interface CoordinatorExchange {
  sendInfo(info: CoordinatorInfo): Promise<CoordinatorSecrets>;
  memberStarted(): Promise<void>;
}

/** CoordinatorJoinHandlers are the activating Coordinator's side of ActivateAsAdditionalCoordinator. */
export interface CoordinatorJoinHandlers {
  /** secrets registers the new Coordinator from its info and returns its secrets. */
  secrets(info: CoordinatorInfo): Promise<CoordinatorSecrets>;
  /** promote runs once the new Coordinator's store member started. */
  promote(): Promise<void>;
}

/** PeerUpdate is a vpnapi GetUpdate answer; peers is undefined when nothing changed. */
export interface PeerUpdate {
  resourceVersion: number;
  peers: PeerRecord[] | undefined;
}

/**
 * PeerDelta is one WatchUpdates message: the peer set's changes from fromVersion to
 * resourceVersion (peers added or changed in upserted, peers gone in removed, by VPN IP), or with
 * snapshot set the whole set at resourceVersion in upserted (fromVersion is then 0).
 */
export interface PeerDelta {
  resourceVersion: number;
  fromVersion: number;
  snapshot: boolean;
  upserted: PeerRecord[];
  removed: string[];
}

/**
 * UpdateStream is a Node's end of one WatchUpdates stream. next() resolves with the next delta in
 * order, or undefined when the Coordinator ended the stream; it rejects when the stream failed.
 * ack reports the version now applied to the device; close ends the stream (idempotent).
 */
export interface UpdateStream {
  next(): Promise<PeerDelta | undefined>;
  ack(appliedVersion: number): void;
  close(): void;
}

/**
 * CoordinatorClient is how a Node calls the Coordinator's vpnapi through the VPN (src/vpnapi).
 * It keeps one channel open until close(). Safe for concurrent use.
 */
export interface CoordinatorClient {
  /** getUpdate polls; resourceVersion is the version the caller has applied (its acknowledgement). */
  getUpdate(resourceVersion: number, nodeVPNIP: string): Promise<PeerUpdate>;
  /** watchUpdates opens a WatchUpdates stream from appliedVersion (0: start with a snapshot). */
  watchUpdates?(appliedVersion: number, nodeVPNIP: string): UpdateStream;
  getDataKey(dataKeyID: string, length: number): Promise<Buffer>;
  close(): void;
}

/** CoordinatorDialer opens a CoordinatorClient to the vpnapi at coordinatorVPNIP. */
export type CoordinatorDialer = (coordinatorVPNIP: string) => CoordinatorClient;
