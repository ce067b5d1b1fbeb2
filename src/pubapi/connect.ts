import * as grpc from "@grpc/grpc-js";
import type { TLSSocket } from "node:tls";

import type { Issuer, Validator, Verdict } from "../attestation/attestation.js";
import { exportCallerKeyingMaterial, issueCallerDocument } from "../atls/caller-proof.js";
import { createATLSChannelCredentials, type ATLSChannelCredentials } from "../atls/client.js";
import type { CoordinatorCredential } from "../core/coordinator-auth.js";
import { CoreError, InternalError, PermissionDeniedError, UnavailableError } from "../core/errors.js";
import { newPubAPIClient } from "./client.js";
import type { PubAPIGrpcClient, WireCallerProof } from "./messages.js";

/**
 * ProvenChannel is a pubapi channel of its own (its own aTLS credentials, so grpc-js never shares
 * its connection) that knows the TLS socket its calls go over, so it can prove its caller on exactly
 * that connection. close() releases it. Without an issuer (the admin's meshctl) it proves nothing
 * itself but still gives the connection's keying material.
 */
export class ProvenChannel {
  readonly client: PubAPIGrpcClient;
  readonly #creds: ATLSChannelCredentials;
  readonly #issuer: Issuer | undefined;
  #socket: TLSSocket | undefined;
  /** #documents caches the caller document per connection: it stays valid as long as the connection. */
  readonly #documents = new WeakMap<TLSSocket, Promise<{ oid: string; document: Buffer }>>();

  /**
   * `options` is requireFresh (activation) or aTLS options: requireFresh and an onVerified hook
   * that may refuse verified evidence (e.g. meshctl recover's cluster-marker check).
   */
  constructor(endpoint: string, validators: readonly Validator[], issuer: Issuer | undefined, options: boolean | { requireFresh?: boolean; onVerified?: (verdict: Verdict) => void }) {
    this.#issuer = issuer;
    const o = typeof options === "boolean" ? { requireFresh: options } : options;
    this.#creds = createATLSChannelCredentials(validators, { ...o, onConnected: (s) => (this.#socket = s) });
    this.client = newPubAPIClient(endpoint, this.#creds);
  }

  /**
   * proof connects (if needed) and returns the caller proof for the current connection: an
   * attestation document bound to its keying material and, with `credential`, the cluster signature
   * over it. A handshake failure rejects with the aTLS reason (PermissionDeniedError).
   */
  async proof(deadline: number, credential: CoordinatorCredential | undefined): Promise<WireCallerProof> {
    const issuer = this.#issuer;
    if (!issuer) throw new InternalError("caller proof: this channel has no issuer to prove its caller with");
    const { socket, ekm } = await this.#connection(deadline);
    let doc = this.#documents.get(socket);
    if (!doc) {
      doc = issueCallerDocument(issuer, ekm);
      this.#documents.set(socket, doc);
      doc.catch(() => this.#documents.delete(socket));
    }
    const { oid, document } = await doc;
    return { oid, document, clusterSignature: credential ? credential.signConnection(ekm) : Buffer.alloc(0) };
  }

  /** keyingMaterial connects (if needed) and returns the current connection's caller-proof keying material. */
  async keyingMaterial(deadline: number): Promise<Buffer> {
    return (await this.#connection(deadline)).ekm;
  }

  close(): void {
    this.client.close();
  }

  async #connection(deadline: number): Promise<{ socket: TLSSocket; ekm: Buffer }> {
    await this.#ready(deadline);
    const socket = this.#socket;
    if (!socket || socket.destroyed) throw new UnavailableError("caller proof: the connection closed before the call");
    return { socket, ekm: exportCallerKeyingMaterial(socket) };
  }

  /** #ready waits until the channel is connected; a failed connection fails at once, naming the aTLS check. */
  #ready(deadline: number): Promise<void> {
    const channel = this.client.getChannel();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        if (state === grpc.connectivityState.READY) return resolve();
        if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
          const atls = this.#creds.lastError;
          return reject(atls && !atls.retryable ? new PermissionDeniedError(atls.message) : new UnavailableError(atls ? atls.message : "connection failed (no aTLS connection could be established)"));
        }
        channel.watchConnectivityState(state, deadline, (err) => {
          if (err) reject(new CoreError("deadline-exceeded", "timed out connecting"));
          else check();
        });
      };
      check();
    });
  }
}
