import type { ClusterSecrets } from "./cluster-store.js";
import { FailedPreconditionError } from "./errors.js";
import type { ReadOptions, Store, Transaction } from "./store.js";

/**
 * StoreMembers is the membership of the Coordinators' shared store (an etcd cluster meshd manages,
 * src/store/managed-etcd.ts): every Coordinator runs one member. The core calls it at the moments a
 * Coordinator's membership changes; without it (one Coordinator, memory store, or an external
 * etcd) every Coordinator uses the Store it was given. Implementations attach the store they open
 * to the DeferredStore the peer was given.
 */
export interface StoreMembers {
  /** create starts the store as its only member on the first Coordinator (its VPN IP is on its device). */
  create(vpnIP: string, secrets: ClusterSecrets): Promise<void>;
  /**
   * addMember admits a new Coordinator at vpnIP (an etcd learner, which counts for no quorum) and
   * returns what it needs to join (opaque to the core, sent in CoordinatorSecrets.store_join).
   */
  addMember(vpnIP: string): Promise<string>;
  /** promoteMember makes the joined member a voting one, once it caught up (retrying up to a bound). */
  promoteMember(vpnIP: string): Promise<void>;
  /** isVoter says whether the member at vpnIP is a voting member (promoted); false for a learner or none. */
  isVoter(vpnIP: string): Promise<boolean>;
  /** removeMember takes the member at vpnIP out (undoing addMember, or removing a Coordinator); absent is fine. */
  removeMember(vpnIP: string): Promise<void>;
  /** join starts this new Coordinator's member with `joinInfo` from addMember (a learner: call ready() once promoted). */
  join(vpnIP: string, secrets: ClusterSecrets, joinInfo: string): Promise<void>;
  /** ready opens the store on this member once it serves (after join: once the member was promoted). */
  ready(): Promise<void>;
  /** reopen starts this Coordinator's member again from its data (after a restart). */
  reopen(vpnIP: string): Promise<void>;
  /**
   * checkQuorum throws UnavailableError naming the lost quorum when a change cannot be committed
   * now (this member sees no leader); it answers at once, never waiting for a timeout.
   */
  checkQuorum(): Promise<void>;
  /** watch calls onChange after every change of the store by any Coordinator; returns the stop function. */
  watch(onChange: () => void): () => void;
}

/**
 * DeferredStore is a Store that becomes usable once attach() gave it the real one (the managed etcd
 * member starts only when this peer becomes a Coordinator). Before that every call fails with
 * FailedPreconditionError. Safe for concurrent use.
 */
export class DeferredStore implements Store {
  #inner: Store | undefined;
  #closed = false;

  /** attach sets the store every later call goes to (replacing and closing an earlier one). */
  async attach(store: Store): Promise<void> {
    const old = this.#inner;
    this.#inner = store;
    if (old && old !== store) await old.close();
  }

  get attached(): boolean {
    return this.#inner !== undefined;
  }

  #store(): Store {
    if (this.#closed) throw new FailedPreconditionError("store: closed");
    if (!this.#inner) throw new FailedPreconditionError("store: this peer runs no store member yet (it is not an activated Coordinator)");
    return this.#inner;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return Promise.resolve().then(() => this.#store().get(key, options));
  }

  list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    return Promise.resolve().then(() => this.#store().list(prefix));
  }

  begin(): Promise<Transaction> {
    return Promise.resolve().then(() => this.#store().begin());
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#inner?.close();
  }
}
