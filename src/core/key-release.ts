import type { ClusterStore } from "./cluster-store.js";
import { CoordinatorCredential } from "./coordinator-auth.js";
import { errorMessage, PermissionDeniedError, UnavailableError } from "./errors.js";
import { resultOf, type MeshEvents } from "./events.js";
import { checkDiskUUID, deriveDataKey, stateDiskKey } from "./keys.js";
import type { Logger } from "../shared/logger.js";
import type { PeerClient } from "./remote.js";
import type { ReadOptions } from "./store.js";
import type { StoreMembers } from "./store-members.js";

/** KeyReleaseOptions wires a Coordinator's key release. */
export interface KeyReleaseOptions {
  store: ClusterStore;
  peerClient: PeerClient;
  logger: Logger;
  /** members is the shared store's membership (managed etcd); undefined: one store, always a quorum. */
  members?: StoreMembers;
  events?: MeshEvents;
}

/**
 * KeyRelease is the part of a Coordinator that hands out keys derived from the master secret: data
 * keys to registered peers (vpnapi GetDataKey) and state-disk keys to the peer registered for a
 * disk (pubapi RequestStateDiskKey, delivered over a connection that verifies that peer). Every
 * release is logged with who received it, never the key.
 */
export class KeyRelease {
  readonly #o: KeyReleaseOptions;

  constructor(options: KeyReleaseOptions) {
    this.#o = options;
  }

  /**
   * getDataKey derives a data key (never a disk key: keys.ts) for a registered peer: callerVPNIP is
   * the source address of the vpnapi connection, which WireGuard authenticates; undefined (not a VPN
   * address) or an address without a peer record is PERMISSION_DENIED.
   */
  getDataKey(dataKeyID: string, length: number, callerVPNIP: string | undefined): Promise<Buffer> {
    return this.#counted("dataKey", () => this.#dataKey(dataKeyID, length, callerVPNIP));
  }

  async #dataKey(dataKeyID: string, length: number, callerVPNIP: string | undefined): Promise<Buffer> {
    if (callerVPNIP === undefined || !(await this.#o.store.peer(callerVPNIP))) {
      throw new PermissionDeniedError(`GetDataKey: caller ${callerVPNIP ?? "(not a VPN address)"} is not a registered peer of this cluster`);
    }
    const { masterSecret, clusterID } = await this.#o.store.secrets();
    const key = deriveDataKey(masterSecret, clusterID, dataKeyID, length);
    this.#o.logger.info("released a data key", { to: callerVPNIP, dataKeyID, length });
    return key;
  }

  /**
   * requestStateDiskKey delivers the key of a known disk to the peer registered for it, over a
   * connection on which the peer's attestation is verified (the PeerClient's aTLS).
   *
   * Without a store quorum it still answers, from this member's copy: a disk key is a function of
   * secrets that never change and of the disk UUID, and a UUID is never claimed by another peer, so
   * the copy can lag only in a claim or retirement made during the partition. Refusing would
   * deadlock the cluster's own recovery: with two Coordinators, the rebooted one is the quorum the
   * other lacks, and it needs its key to bring its member back.
   */
  requestStateDiskKey(diskUUID: string): Promise<void> {
    return this.#counted("diskKey", () => this.#diskKey(diskUUID));
  }

  async #diskKey(diskUUID: string): Promise<void> {
    checkDiskUUID(diskUUID);
    const read = await this.#readForKeys(diskUUID);
    const peer = await this.#o.store.peerOfDisk(diskUUID, read);
    if (!peer) throw new PermissionDeniedError(`stateDiskUUID: ${diskUUID} is not a disk of any activated peer`);
    const { masterSecret, clusterID } = await this.#o.store.secrets(read);
    const credential = CoordinatorCredential.derive(masterSecret, clusterID);
    const endpoint = `${peer.publicIP}:${peer.pubapiPort}`;
    await this.#o.peerClient.pushStateDiskKey(endpoint, diskUUID, stateDiskKey(masterSecret, clusterID, diskUUID), credential);
    this.#o.logger.info("released a state-disk key", { to: peer.vpnIP, endpoint, diskUUID, fromLocalCopy: read.local === true });
  }

  /** #counted reports the outcome of one release to the events. */
  async #counted<T>(kind: "dataKey" | "diskKey", fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn();
      this.#o.events?.[kind]?.("released");
      return v;
    } catch (err) {
      this.#o.events?.[kind]?.(resultOf(err));
      throw err;
    }
  }

  /** #readForKeys chooses the reads for a disk-key release: the cluster's view, or this member's copy when the quorum is lost. */
  async #readForKeys(diskUUID: string): Promise<ReadOptions> {
    try {
      await this.#o.members?.checkQuorum();
      return {};
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.#o.logger.warn("store quorum lost: releasing a disk key from this member's copy", { diskUUID, cause: errorMessage(err) });
      return { local: true };
    }
  }
}
