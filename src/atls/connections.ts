import type { TLSSocket } from "node:tls";

import { PermissionDeniedError } from "../core/errors.js";
import { exportCallerKeyingMaterial } from "./caller-proof.js";

/**
 * ATLSConnections tracks the server side of every live aTLS connection by the client's address
 * ("ADDRESS:PORT", exactly as grpc-js's call.getPeer() renders it), so a pubapi handler can reach
 * the TLS connection its call came over and export its keying material. Entries go when their
 * socket closes. Two live connections with the same key (possible only with several listeners
 * sharing credentials) make that key ambiguous: lookups fail closed. Safe for concurrent use.
 */
export class ATLSConnections {
  readonly #sockets = new Map<string, TLSSocket | "ambiguous">();

  /** add registers a server-side TLS socket (called once per connection, during its handshake). */
  add(socket: TLSSocket): void {
    const key = keyOf(socket);
    if (!key) return;
    const prev = this.#sockets.get(key);
    this.#sockets.set(key, prev && prev !== socket ? "ambiguous" : socket);
    socket.once("close", () => {
      const cur = this.#sockets.get(key);
      if (cur === socket || cur === "ambiguous") this.#sockets.delete(key);
    });
  }

  /** size is the number of tracked connections (tests). */
  get size(): number {
    return this.#sockets.size;
  }

  /**
   * keyingMaterial returns the caller-proof keying material of the live connection of `peer`
   * (call.getPeer()), or throws PermissionDeniedError when no single live aTLS connection matches.
   */
  keyingMaterial(peer: string): Buffer {
    const s = this.#sockets.get(peer);
    if (!s || s === "ambiguous" || s.destroyed) {
      throw new PermissionDeniedError(`caller proof: the call's TLS connection (${peer.slice(0, 80)}) is ${s === "ambiguous" ? "ambiguous" : "unknown"}; cannot bind a proof to it`);
    }
    return exportCallerKeyingMaterial(s);
  }
}

function keyOf(socket: TLSSocket): string | undefined {
  const { remoteAddress, remotePort } = socket;
  return remoteAddress && remotePort ? `${remoteAddress}:${remotePort}` : undefined;
}
