import type { CallerVerifier } from "./caller.js";
import type { Clock } from "./clock.js";
import type { StateDisk } from "./disk.js";
import type { MeshEvents } from "./events.js";
import type { Logger } from "../shared/logger.js";
import type { InitMarker } from "./marker.js";
import type { NodeStateStore } from "./node-state.js";
import type { CoordinatorDialer, PeerClient } from "./remote.js";
import type { Store } from "./store.js";
import type { StoreMembers } from "./store-members.js";
import type { VPN } from "./vpn.js";

/** MeshPeerOptions wires a peer (one per meshd). Every side effect comes in through these. */
export interface MeshPeerOptions {
  /** publicIP is where other peers reach this peer's pubapi and WireGuard port. */
  publicIP: string;
  pubapiPort: number;
  wgPort: number;
  vpn: VPN;
  /** disk is the LUKS2 state disk; undefined skips disk steps (with a log line). */
  disk: StateDisk | undefined;
  marker: InitMarker;
  nodeState: NodeStateStore;
  /**
   * store is used once the peer is a Coordinator. The MeshPeer does not close it. With `members`
   * it must be the DeferredStore those members attach their store to.
   */
  store: Store;
  /**
   * discardUncommitted runs when the peer starts fresh (no node state, no marker): it removes what
   * an activation interrupted before its commit point wrote to this peer's own store (the embedded
   * store's file, a managed etcd member's data). undefined for a store others share (external etcd).
   */
  discardUncommitted?: () => Promise<void>;
  /** members manages this Coordinator's member of a shared store (managed etcd); undefined: `store` as given. */
  members?: StoreMembers;
  peerClient: PeerClient;
  dialCoordinator: CoordinatorDialer;
  /**
   * callerVerifier checks the attestation a Coordinator proves on its connection before this peer
   * acts for it (ActivateAsNode, JoinCluster, TriggerNodeUpdate, PushStateDiskKey), against this
   * peer's own measurement policy.
   */
  callerVerifier: CallerVerifier;
  updateIntervalMs: number;
  activationConcurrency?: number;
  /**
   * stateLocked says the state disk was locked at start (a reboot with a block-device state
   * volume). A Coordinator then has neither its store nor the master secret until its disk key
   * arrives: from another live Coordinator (RequestStateDiskKey) or from the admin (`meshctl recover`).
   */
  stateLocked?: boolean;
  /** onStateUnlocked runs once a locked state disk opened, before the store is used (meshd opens its embedded store there). */
  onStateUnlocked?: () => Promise<void>;
  /** onCoordinator runs once the peer has its Coordinator VPN IP (meshd starts the vpnapi there). */
  onCoordinator?: (vpnIP: string) => Promise<void>;
  clock: Clock;
  logger: Logger;
  /** events receives observations for metrics (src/metrics/); undefined: none. */
  events?: MeshEvents;
}
