import type { NodeFailure } from "./coordinator.js";
import type { PeerRecord } from "./peer.js";

/** CoordinatorActivation is an admin's ActivateAsCoordinator request, validated by the core. */
export interface CoordinatorActivation {
  adminVPNPubKey: string;
  /** adminPubKey is the admin's Ed25519 signing key (32 bytes): later admin RPCs must be signed with it. */
  adminPubKey: Uint8Array;
  masterSecret: Uint8Array;
  nodeEndpoints: string[];
  coordinatorEndpoints: string[];
}

/** AdminConfig is what the admin gets back: enough to write wg0.conf and admin.json. */
export interface AdminConfig {
  adminVPNIP: string;
  coordinator: PeerRecord;
  ownerID: Buffer;
  clusterID: Buffer;
  /** peers is the peer set after activation (admin included), for the admin's WireGuard config. */
  peers: PeerRecord[];
  failed: NodeFailure[];
}
