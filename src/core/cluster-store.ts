import { CoreError, FailedPreconditionError, InternalError, NotFoundError, PermissionDeniedError } from "./errors.js";
import { timingSafeEqual } from "node:crypto";
import { allocateIP, coordinatorPool, inPool, ipOf, nodePool, releaseIP, type IPPool } from "./ip-pool.js";
import { checkPeerRecord, checkPeerSet, type PeerRecord } from "./peer.js";
import { runTransaction, type ReadOptions, type Store, type Transaction } from "./store.js";

const keys = {
  masterSecret: "cluster/masterSecret",
  clusterID: "cluster/clusterID",
  resourceVersion: "cluster/resourceVersion",
  peer: (vpnIP: string) => `peers/${vpnIP}`,
  peers: "peers/",
  disk: (uuid: string) => `disks/${uuid}`,
  disks: "disks/",
  adminPubKey: "cluster/adminPubKey",
  pending: (vpnIP: string) => `pending/${vpnIP}`,
  pendings: "pending/",
};

/** retired is the owner of a disk UUID whose key went to a failed or removed peer: never claimable again. */
const retired = Buffer.from("");

/** PendingBy names who stored a pending peer: a Coordinator's VPN IP and that process's run ID. */
export interface PendingBy {
  by: string;
  run: string;
}

/** InitCluster is what the first Coordinator commits to an empty store (ClusterStore.initCluster). */
export interface InitCluster {
  secrets: ClusterSecrets;
  adminPubKey: Uint8Array;
  adminVPNPubKey: string;
  /** self is the Coordinator's own record; its VPN IP is the first of the Coordinator pool. */
  self: Omit<PeerRecord, "vpnIP">;
  /** diskUUID is the Coordinator's own state disk ("" or undefined without one). */
  diskUUID?: string;
}

/** ClusterSecrets are what a Coordinator needs to derive keys. Never log them. */
export interface ClusterSecrets {
  masterSecret: Buffer;
  clusterID: Buffer;
}

/** PeerSnapshot is the peer set at one resource version. */
export interface PeerSnapshot {
  resourceVersion: number;
  peers: PeerRecord[];
}

/**
 * ClusterStore gives typed access to the Coordinators' Store. Every change to the peer set bumps
 * the resource version in the same transaction. Safe for concurrent use (all writes are
 * optimistic transactions, retried on conflict).
 */
export class ClusterStore {
  readonly #store: Store;
  #cache: PeerSnapshot | undefined;
  /** #writes serializes this process's write transactions, so they conflict only with other processes. */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(store: Store) {
    this.#store = store;
  }

  /** putSecrets stores the master secret and cluster ID (first activation only). */
  async putSecrets(secrets: ClusterSecrets): Promise<void> {
    await this.#write(async (tx) => {
      tx.put(keys.masterSecret, secrets.masterSecret);
      tx.put(keys.clusterID, secrets.clusterID);
    });
  }

  /**
   * initCluster is the first Coordinator's store commit, one transaction: it refuses a store that
   * already holds a cluster, takes the first Coordinator IP and the admin's IP, and stores the
   * secrets, the admin's signing key, the Coordinator's own record with its state-disk UUID
   * (registered before its key exists, so no Node can ever claim it) and the admin's record. A
   * crash before it leaves nothing; after it, everything the Coordinator needs to be restored.
   */
  async initCluster(o: InitCluster): Promise<{ vpnIP: string; adminVPNIP: string; replaced: boolean }> {
    return this.#write(async (tx) => {
      const id = await tx.get(keys.clusterID);
      const replaced = id !== undefined && (await ownUncommitted(tx, o));
      if (id && !replaced) {
        throw new FailedPreconditionError(
          `store: it already holds cluster ${Buffer.from(id).toString("hex").slice(0, 16)}… (another master secret, another first Coordinator, or Nodes already): it belongs to another cluster; give this Coordinator an empty store`,
        );
      }
      // This peer's own activation, interrupted before its commit point (a shared store is not discarded at start): start it over.
      if (replaced) for (const prefix of ownedPrefixes) for (const [k] of await tx.list(prefix)) tx.delete(k);
      const vpnIP = await allocateIP(tx, coordinatorPool);
      const adminVPNIP = await allocateIP(tx, nodePool);
      const self = checkPeerRecord({ ...o.self, vpnIP }, "self");
      const admin = checkPeerRecord({ role: "admin", publicIP: "", vpnIP: adminVPNIP, vpnPubKey: o.adminVPNPubKey, wgPort: 0, pubapiPort: 0 }, "admin");
      checkPeerSet([self, admin], "peers");
      tx.put(keys.masterSecret, o.secrets.masterSecret);
      tx.put(keys.clusterID, o.secrets.clusterID);
      tx.put(keys.adminPubKey, o.adminPubKey);
      if (o.diskUUID) await claimDiskIn(tx, o.diskUUID, vpnIP);
      tx.put(keys.peer(vpnIP), Buffer.from(JSON.stringify(self)));
      tx.put(keys.peer(adminVPNIP), Buffer.from(JSON.stringify(admin)));
      await bumpVersion(tx);
      return { vpnIP, adminVPNIP, replaced };
    });
  }

  /** secrets returns the stored secrets or throws NotFoundError when the cluster is not activated. */
  async secrets(options?: ReadOptions): Promise<ClusterSecrets> {
    const [ms, id] = await Promise.all([this.#store.get(keys.masterSecret, options), this.#store.get(keys.clusterID, options)]);
    if (!ms || !id) throw new NotFoundError("cluster secrets: not stored (the Coordinator is not activated)");
    return { masterSecret: Buffer.from(ms), clusterID: Buffer.from(id) };
  }

  /** resourceVersion returns the peer set's current version (0 before any peer). */
  async resourceVersion(): Promise<number> {
    return parseVersion(await this.#store.get(keys.resourceVersion));
  }

  /** snapshot returns the peer set and its version; reads the peers only when the version moved. */
  async snapshot(): Promise<PeerSnapshot> {
    const version = await this.resourceVersion();
    if (this.#cache?.resourceVersion === version) return this.#cache;
    const tx = await this.#store.begin();
    try {
      const snap = { resourceVersion: parseVersion(await tx.get(keys.resourceVersion)), peers: await readPeers(tx) };
      this.#cache = snap;
      return snap;
    } finally {
      tx.rollback();
    }
  }

  /** allocateCoordinatorIP reserves the next Coordinator address. */
  allocateCoordinatorIP(): Promise<string> {
    return this.#write((tx) => allocateIP(tx, coordinatorPool));
  }

  /** allocateNodeIP reserves the next Node/admin address. */
  allocateNodeIP(): Promise<string> {
    return this.#write((tx) => allocateIP(tx, nodePool));
  }

  /**
   * releaseNodeIP returns an address that was reserved but never used by a peer. When `retireDisk`
   * is given and claimed for `ip`, the same transaction retires that disk UUID: its key was handed
   * out during the failed activation, so no peer may ever claim it again.
   */
  async releaseNodeIP(ip: string, retireDisk?: string, pool: IPPool = nodePool): Promise<void> {
    await this.#write(async (tx) => {
      if (await tx.get(keys.peer(ip))) throw new InternalError(`release ${ip}: still used by a peer`);
      releaseIP(tx, pool, ip);
      if (retireDisk !== undefined && (await diskOwner(tx, retireDisk)) === ip) tx.put(keys.disk(retireDisk), retired);
    });
  }

  /** releaseCoordinatorIP is releaseNodeIP for an address of the Coordinator pool. */
  releaseCoordinatorIP(ip: string, retireDisk?: string): Promise<void> {
    return this.releaseNodeIP(ip, retireDisk, coordinatorPool);
  }

  /**
   * claimDisk registers state-disk `diskUUID` for the peer at `vpnIP` (which need not have a record
   * yet). The check that no other peer (and no failed activation) claimed it and the write are one
   * transaction, so of concurrent claims exactly one wins; the others get PermissionDeniedError.
   * Claiming one's own disk again is a no-op.
   */
  async claimDisk(diskUUID: string, vpnIP: string): Promise<void> {
    await this.#write(async (tx) => claimDiskIn(tx, diskUUID, vpnIP));
  }

  /**
   * putPeer adds a peer (putting the same record again is a no-op write), optionally claiming its
   * state-disk UUID (as claimDisk), and bumps the version, all in one transaction. It refuses
   * (ALREADY_EXISTS) a record whose WireGuard public key another peer has and a VPN IP that holds a
   * different record: the stored peer set always passes checkPeerSet.
   */
  async putPeer(record: PeerRecord, diskUUID?: string, options: { pending?: PendingBy } = {}): Promise<number> {
    const peer = checkPeerRecord(record, "peer");
    return this.#write(async (tx) => {
      // A peer stored before it committed (a further Coordinator) is pending until clearPending: a
      // restarted Coordinator rolls back what an earlier run of it was activating when it died.
      if (options.pending) tx.put(keys.pending(peer.vpnIP), Buffer.from(JSON.stringify(options.pending)));
      const others = (await readPeers(tx)).filter((p) => p.vpnIP !== peer.vpnIP);
      const old = await tx.get(keys.peer(peer.vpnIP));
      if (old && JSON.stringify(decodePeer(keys.peer(peer.vpnIP), old)) !== JSON.stringify(peer)) {
        throw new CoreError("already-exists", `peer ${peer.vpnIP}: vpnIP: the VPN IP is already taken by another peer`);
      }
      const twin = others.find((p) => p.vpnPubKey === peer.vpnPubKey);
      if (twin) throw new CoreError("already-exists", `peer ${peer.vpnIP}: vpnPubKey: WireGuard public key already used by peer ${twin.vpnIP}`);
      checkPeerSet([...others, peer], "peers");
      if (diskUUID) await claimDiskIn(tx, diskUUID, peer.vpnIP);
      tx.put(keys.peer(peer.vpnIP), Buffer.from(JSON.stringify(peer)));
      return bumpVersion(tx);
    });
  }

  /** clearPending marks the peer at vpnIP as committed (see putPeer's pendingBy). */
  async clearPending(vpnIP: string): Promise<void> {
    await this.#write(async (tx) => {
      tx.delete(keys.pending(vpnIP));
    });
  }

  /** pending lists the peers stored as pending (see putPeer) and never cleared, with who stored them. */
  async pending(): Promise<Array<PendingBy & { vpnIP: string }>> {
    const out: Array<PendingBy & { vpnIP: string }> = [];
    for (const [k, v] of await this.#store.list(keys.pendings)) {
      let p: Partial<PendingBy> = {};
      try {
        p = JSON.parse(Buffer.from(v).toString()) as Partial<PendingBy>;
      } catch {
        // unreadable: nobody's, so rolled back by whoever looks
      }
      out.push({ vpnIP: k.slice(keys.pendings.length), by: typeof p.by === "string" ? p.by : "", run: typeof p.run === "string" ? p.run : "" });
    }
    return out;
  }

  #write<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const run = this.#writes.then(() => runTransaction(this.#store, fn));
    this.#writes = run.catch(() => {});
    return run;
  }

  /** peer returns the peer with vpnIP, or undefined. */
  async peer(vpnIP: string, options?: ReadOptions): Promise<PeerRecord | undefined> {
    const raw = await this.#store.get(keys.peer(vpnIP), options);
    return raw ? decodePeer(keys.peer(vpnIP), raw) : undefined;
  }

  /** adminKey returns the admin's Ed25519 public key, or undefined when none is stored. */
  async adminKey(): Promise<Buffer | undefined> {
    const raw = await this.#store.get(keys.adminPubKey);
    return raw ? Buffer.from(raw) : undefined;
  }

  /**
   * removePeer takes a Node or admin out of the peer set in one transaction: its record goes, its
   * VPN IP returns to the pool, every state-disk UUID registered for it is retired (its disk key is
   * never released again, and no peer can claim that UUID), and the resource version moves. A Coordinator is removed only with options.coordinator (and a Node never with it).
   * Returns the new resource version; NotFoundError when no peer has vpnIP.
   */
  async removePeer(vpnIP: string, options: { coordinator?: boolean } = {}): Promise<number> {
    return this.#write(async (tx) => {
      const raw = await tx.get(keys.peer(vpnIP));
      if (!raw) throw new NotFoundError(`vpnIP: no peer has ${vpnIP}`);
      const peer = decodePeer(keys.peer(vpnIP), raw);
      const pool = options.coordinator ? coordinatorPool : nodePool;
      if ((peer.role === "coordinator") !== (options.coordinator === true) || !inPool(pool, vpnIP)) {
        throw new FailedPreconditionError(`vpnIP: ${vpnIP} is ${peer.role === "coordinator" ? "a Coordinator (use remove-coordinator)" : "not a Coordinator"}`);
      }
      tx.delete(keys.peer(vpnIP));
      tx.delete(keys.pending(vpnIP));
      for (const [k, v] of await tx.list(keys.disks)) if (Buffer.from(v).toString() === vpnIP) tx.put(k, retired);
      releaseIP(tx, pool, vpnIP);
      return bumpVersion(tx);
    });
  }

  /**
   * peerOfDisk returns the peer registered with a state-disk UUID, or undefined when none is (never
   * seen, or retired). options.local reads this replica's copy (see ReadOptions).
   */
  async peerOfDisk(diskUUID: string, options?: ReadOptions): Promise<PeerRecord | undefined> {
    const ip = await this.#store.get(keys.disk(diskUUID), options);
    return ip && ip.length > 0 ? this.peer(Buffer.from(ip).toString(), options) : undefined;
  }
}

/** ownedPrefixes are every prefix the cluster's state lives under. */
const ownedPrefixes = ["cluster/", "peers/", "disks/", "pending/", "ippool/"];

/**
 * ownUncommitted says whether the cluster a store holds is what this very activation wrote before an
 * interruption: the same master secret, this peer (its WireGuard key) as the first Coordinator, and
 * nothing activated since (only that Coordinator and the admin in the peer set).
 */
async function ownUncommitted(tx: Transaction, o: InitCluster): Promise<boolean> {
  const ms = await tx.get(keys.masterSecret);
  if (!ms || ms.length !== o.secrets.masterSecret.length || !timingSafeEqual(Buffer.from(ms), o.secrets.masterSecret)) return false;
  const peers = await readPeers(tx);
  const first = peers.find((p) => p.vpnIP === ipOf(coordinatorPool.first));
  return first?.vpnPubKey === o.self.vpnPubKey && peers.every((p) => p === first || p.role === "admin");
}

/** diskOwner is the VPN IP a disk UUID is claimed for, "" when retired, undefined when unclaimed. */
async function diskOwner(tx: Transaction, diskUUID: string): Promise<string | undefined> {
  const raw = await tx.get(keys.disk(diskUUID));
  return raw === undefined ? undefined : Buffer.from(raw).toString();
}

async function claimDiskIn(tx: Transaction, diskUUID: string, vpnIP: string): Promise<void> {
  const owner = await diskOwner(tx, diskUUID);
  if (owner === vpnIP) return;
  if (owner !== undefined) {
    throw new PermissionDeniedError(`stateDiskUUID: ${diskUUID} already belongs to another peer${owner === "" ? " (a failed or removed one)" : ""}`);
  }
  tx.put(keys.disk(diskUUID), Buffer.from(vpnIP));
}

async function bumpVersion(tx: Transaction): Promise<number> {
  const next = parseVersion(await tx.get(keys.resourceVersion)) + 1;
  tx.put(keys.resourceVersion, Buffer.from(String(next)));
  return next;
}

async function readPeers(tx: Transaction): Promise<PeerRecord[]> {
  return (await tx.list(keys.peers)).map(([k, v]) => decodePeer(k, v));
}

function decodePeer(key: string, raw: Uint8Array): PeerRecord {
  try {
    return checkPeerRecord(JSON.parse(Buffer.from(raw).toString()), key);
  } catch (err) {
    throw new InternalError(`store: corrupt peer record ${key}`, { cause: err });
  }
}

function parseVersion(raw: Uint8Array | undefined): number {
  if (raw === undefined) return 0;
  const v = Number(Buffer.from(raw).toString());
  if (!Number.isSafeInteger(v) || v < 0) throw new InternalError("store: corrupt resource version");
  return v;
}
