import type { Clock } from "./clock.js";
import type { StateDisk } from "./disk.js";
import { CoreError, errorMessage, FailedPreconditionError, PermissionDeniedError, UnavailableError } from "./errors.js";
import type { Logger } from "./logger.js";
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
  #waiting: { uuid: string; delivered: boolean } | undefined;

  constructor(options: DiskKeyRequestOptions) {
    this.#o = options;
  }

  /**
   * request returns once a Coordinator delivered a key that opened the disk. A refusal (unknown
   * disk, permission denied) is final; anything else is retried with backoff.
   */
  async request(uuid: string, endpoints: string[]): Promise<void> {
    if (endpoints.length === 0) throw new FailedPreconditionError("re-join: the node state names no Coordinator endpoint to ask for the disk key");
    const waiting = { uuid, delivered: false };
    this.#waiting = waiting;
    try {
      for (let attempt = 0; !waiting.delivered; attempt++) {
        const ep = endpoints[attempt % endpoints.length]!;
        try {
          await this.#o.peerClient.requestStateDiskKey(ep, uuid);
          if (!waiting.delivered) throw new UnavailableError(`${ep} answered but no key arrived`);
        } catch (err) {
          if (err instanceof CoreError && (err.code === "permission-denied" || err.code === "invalid-argument" || err.code === "not-found")) {
            throw new PermissionDeniedError(`re-join: Coordinator ${ep} refused the key of disk ${uuid}: ${err.message}`, { cause: err });
          }
          this.#o.logger.warn("re-join: no disk key yet", { coordinator: ep, error: errorMessage(err), attempt });
          await this.#o.clock.sleep(this.#o.backoffMs(attempt));
        }
      }
    } finally {
      this.#waiting = undefined;
    }
  }

  /** receive takes a pushed key (PushStateDiskKey): it must be for the awaited disk and open it. */
  async receive(uuid: string, key: Uint8Array): Promise<void> {
    const waiting = this.#waiting;
    if (!waiting || waiting.uuid !== uuid || !this.#o.disk) {
      throw new FailedPreconditionError(`PushStateDiskKey: this peer is not waiting for the key of disk ${uuid}`);
    }
    await this.#o.disk.unlock(key);
    waiting.delivered = true;
  }
}
