import type * as grpc from "@grpc/grpc-js";
import { CoreError, errorMessage, InvalidArgumentError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import { checkPeerSet } from "../core/peer.js";
import type { PeerDelta, UpdateStream } from "../core/remote.js";
import type { UpdateFeed } from "../core/update-feed.js";
import { checkIP } from "../core/validate.js";
import { peerFromWire, peerToWire } from "../rpc/peer-wire.js";
import { fromServiceError, toStatus } from "../rpc/status.js";

/** WireWatchRequest and WirePeerChanges are the vpnapi messages as received (generated from vpnapi.proto). */
export type { WatchRequest__Output as WireWatchRequest } from "../gen/attestedmesh/vpnapi/WatchRequest.js";
export type { PeerChanges__Output as WirePeerChanges } from "../gen/attestedmesh/vpnapi/PeerChanges.js";
import type { WatchRequest__Output as WireWatchRequest } from "../gen/attestedmesh/vpnapi/WatchRequest.js";
import type { PeerChanges__Output as WirePeerChanges } from "../gen/attestedmesh/vpnapi/PeerChanges.js";

/** maxRemovedPerMessage bounds a PeerChanges' removed list a Node accepts. */
const maxRemoved = 65_536;

/**
 * serveWatch runs one WatchUpdates stream on the Coordinator: the first message names the Node's
 * applied version; the reply is feed.since(it), then, on every new version, the changes since the
 * last version sent. When the Node reads slowly (write() returned false) nothing more is written
 * until 'drain', and then one message covers everything since: a slow Node costs one pending
 * message, never a queue. Later messages are acknowledgements. `node` identifies the caller (its
 * source VPN IP, else the claimed one in the first message).
 */
export function serveWatch(call: grpc.ServerDuplexStream<WireWatchRequest, WirePeerChanges>, feed: () => UpdateFeed, callerVPNIP: string | undefined, logger: Logger): void {
  let node: string | undefined;
  let sent: number | undefined;
  let blocked = false;
  let unsubscribe: (() => void) | undefined;
  let f: UpdateFeed | undefined;
  const push = (): void => {
    if (sent === undefined || blocked || !f) return;
    const d = f.since(sent);
    if (!d.snapshot && d.resourceVersion === sent) return;
    sent = d.resourceVersion;
    if (!call.write(changesToWire(d))) {
      blocked = true;
      call.once("drain", () => {
        blocked = false;
        push();
      });
    }
  };
  const stop = (): void => {
    unsubscribe?.();
    unsubscribe = undefined;
  };
  const fail = (err: unknown): void => {
    stop();
    logger.debug("WatchUpdates ended", { node, error: errorMessage(err) });
    call.emit("error", toStatus(err, "WatchUpdates", logger));
  };
  call.on("data", (m: WireWatchRequest) => {
    try {
      const v = m.appliedVersion;
      if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError("appliedVersion: must be a non-negative integer");
      if (node === undefined) {
        node = callerVPNIP ?? (m.nodeVpnIp === "" ? undefined : checkIP(m.nodeVpnIp, "nodeVPNIP"));
        if (node === undefined) throw new InvalidArgumentError("nodeVPNIP: required when the caller is not a VPN address");
        f = feed();
        sent = v;
        if (v > 0) f.ack(node, v);
        unsubscribe = f.subscribe(push, node);
        push();
        return;
      }
      if (v > 0 && f && v <= f.version) f.ack(node, v);
    } catch (err) {
      fail(err);
    }
  });
  call.on("end", () => {
    stop();
    call.end();
  });
  call.on("error", stop);
  call.on("cancelled", stop);
  call.on("close", stop);
}

/** changesToWire converts a PeerDelta into a proto PeerChanges. */
export function changesToWire(d: PeerDelta): WirePeerChanges {
  return { resourceVersion: d.resourceVersion, fromVersion: d.fromVersion, snapshot: d.snapshot, upserted: d.upserted.map(peerToWire), removed: d.removed };
}

/** changesFromWire validates a proto PeerChanges from the network; errors name the field. */
export function changesFromWire(w: WirePeerChanges): PeerDelta {
  const v = w.resourceVersion;
  const from = w.fromVersion;
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError("PeerChanges.resourceVersion: must be a non-negative integer");
  if (!Number.isSafeInteger(from) || from < 0 || (!w.snapshot && from > v)) throw new InvalidArgumentError("PeerChanges.fromVersion: out of range");
  if (!Array.isArray(w.removed) || w.removed.length > maxRemoved) throw new InvalidArgumentError("PeerChanges.removed: too many");
  const upserted = checkPeerSet(w.upserted.map((p, i) => peerFromWire(p, `upserted[${i}]`)), "upserted");
  const removed = w.removed.map((ip, i) => checkIP(ip, `removed[${i}]`));
  return { resourceVersion: v, fromVersion: w.snapshot ? 0 : from, snapshot: w.snapshot, upserted, removed };
}

/**
 * WatchClientStream is the Node's UpdateStream over a grpc-js duplex call: messages queue until
 * next() takes them; past 16 queued the call is paused (HTTP/2 flow control then makes the
 * Coordinator coalesce), and resumed below 4.
 */
export class WatchClientStream implements UpdateStream {
  readonly #call: grpc.ClientDuplexStream<WireWatchRequest, WirePeerChanges>;
  readonly #queue: PeerDelta[] = [];
  readonly #target: string;
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  #paused = false;

  constructor(call: grpc.ClientDuplexStream<WireWatchRequest, WirePeerChanges>, appliedVersion: number, nodeVPNIP: string, target: string) {
    this.#call = call;
    this.#target = target;
    call.on("data", (m: WirePeerChanges) => {
      try {
        this.#queue.push(changesFromWire(m));
      } catch (err) {
        this.#error ??= err;
        call.cancel();
      }
      if (this.#queue.length >= 16 && !this.#paused) {
        this.#paused = true;
        call.pause();
      }
      this.#wake?.();
    });
    call.on("end", () => {
      this.#ended = true;
      this.#wake?.();
    });
    call.on("error", (err: unknown) => {
      this.#error ??= fromServiceError(err, `vpnapi WatchUpdates ${target}`);
      this.#wake?.();
    });
    call.write({ appliedVersion, nodeVpnIp: nodeVPNIP });
  }

  async next(): Promise<PeerDelta | undefined> {
    for (;;) {
      const d = this.#queue.shift();
      if (d !== undefined) {
        if (this.#paused && this.#queue.length < 4) {
          this.#paused = false;
          this.#call.resume();
        }
        return d;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  ack(appliedVersion: number): void {
    if (this.#ended || this.#error !== undefined) return;
    this.#call.write({ appliedVersion, nodeVpnIp: "" });
  }

  close(): void {
    if (!this.#ended) {
      this.#ended = true;
      this.#error ??= new CoreError("aborted", `vpnapi WatchUpdates ${this.#target}: closed`);
      this.#call.cancel();
    }
    this.#wake?.();
  }
}
