import type { Clock } from "./clock.js";
import type { StateDisk } from "./disk.js";
import { CoreError, errorMessage, FailedPreconditionError, PermissionDeniedError, UnavailableError } from "./errors.js";
import type { Logger } from "../shared/logger.js";
import type { PeerClient } from "./remote.js";

/** DiskKeyRequestOptions wires a DiskKeyRequest. */
export interface DiskKeyRequestOptions {
  peerClient: PeerClient;
  disk: StateDisk | undefined;
  clock: Clock;
  logger: Logger;
  /** backoffMs is the wait after the attempt-th failure. */
  backoffMs(attempt: number): number;
}

/**
 * DiskKeyRequest is a rebooted peer's side of RequestStateDiskKey: it asks the Coordinators in
 * turn to push the key of its disk, and accepts the pushed key only while it waits for exactly that
 * disk and only if the key opens it. The key is never stored. One request at a time.
 */
export class DiskKeyRequest {
  readonly #o: DiskKeyRequestOptions;
  #waiting: { uuid: string; delivered: boolean; wake: () => void; done: Promise<void> } | undefined;

  constructor(options: DiskKeyRequestOptions) {
    this.#o = options;
  }

  /** waitingFor is the UUID of the disk whose key this peer waits for now (GetState shows it), or undefined. */
  get waitingFor(): string | undefined {
    return this.#waiting?.uuid;
  }

  /**
   * expect marks this peer as waiting for the key of disk `uuid` from now on, before it asks anyone
   * (a locked state disk is known at start, before the pubapi serves): GetState names the disk at
   * once, so `meshctl recover` never finds a locked peer "waiting for nothing", and a key pushed
   * before request() runs is taken. request() for the same UUID continues this wait.
   */
  expect(uuid: string): void {
    if (this.#waiting?.uuid === uuid) return;
    let wake = (): void => {};
    const done = new Promise<void>((resolve) => (wake = resolve));
    this.#waiting = { uuid, delivered: false, wake, done };
  }

  /**
   * request returns once a key that opened the disk was delivered: pushed by a Coordinator it asked
   * (RequestStateDiskKey, the endpoints in turn) or by whoever else may push (see receive). A
   * refusal (unknown disk, permission denied) is final; anything else is retried with backoff.
   * With `pushOnly` an empty endpoint list is allowed: the peer then only waits for a push (a
   * rebooted Coordinator with no other Coordinator to ask waits for `meshctl recover`).
   */
  async request(uuid: string, endpoints: string[], options: { pushOnly?: boolean } = {}): Promise<void> {
    if (endpoints.length === 0 && !options.pushOnly) throw new FailedPreconditionError("re-join: the node state names no Coordinator endpoint to ask for the disk key");
    this.expect(uuid);
    const waiting = this.#waiting!;
    const delivered = waiting.done;
    try {
      if (waiting.delivered) return;
      if (endpoints.length === 0) {
        await delivered;
        return;
      }
      for (let attempt = 0; !waiting.delivered; attempt++) {
        const ep = endpoints[attempt % endpoints.length];
        try {
          await this.#o.peerClient.requestStateDiskKey(ep, uuid);
          if (!waiting.delivered) throw new UnavailableError(`${ep} answered but no key arrived`);
        } catch (err) {
          if (waiting.delivered) break;
          if (err instanceof CoreError && (err.code === "permission-denied" || err.code === "invalid-argument" || err.code === "not-found")) {
            throw new PermissionDeniedError(`re-join: Coordinator ${ep} refused the key of disk ${uuid}: ${err.message}`, { cause: err });
          }
          this.#o.logger.warn("re-join: no disk key yet", { coordinator: ep, error: errorMessage(err), attempt });
          // A key pushed meanwhile (another Coordinator, the admin) ends the wait at once.
          await Promise.race([this.#o.clock.sleep(this.#o.backoffMs(attempt)), delivered]);
        }
      }
    } finally {
      this.#waiting = undefined;
    }
  }

  /** receive takes a pushed key: it must be for the awaited disk and open it. The caller authorized the sender. */
  async receive(uuid: string, key: Uint8Array): Promise<void> {
    const waiting = this.#waiting;
    if (!waiting || waiting.delivered || waiting.uuid !== uuid || !this.#o.disk) {
      throw new FailedPreconditionError(`PushStateDiskKey: this peer is not waiting for the key of disk ${uuid}`);
    }
    try {
      await this.#o.disk.unlock(key);
    } catch (err) {
      // The key derived for this UUID opens no keyslot: this is not the disk that was activated
      // with that UUID (the UUID is public: a host can format a disk with it). Final, never retried.
      if ((err as { code?: unknown }).code === "permission-denied") {
        throw new PermissionDeniedError(`PushStateDiskKey: the key for disk ${uuid} does not open this peer's state disk: it is not the disk activated with that UUID (replaced or reformatted?): ${errorMessage(err)}`, { cause: err });
      }
      throw err;
    }
    waiting.delivered = true;
    waiting.wake();
  }
}
