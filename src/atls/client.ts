import type { TLSSocket } from "node:tls";

import { CallCredentials, ChannelCredentials } from "@grpc/grpc-js";

import type { Validator, Verdict } from "../attestation/attestation.js";
import { ATLSError } from "./errors.js";
import { attestedHandshake, type AttestedCertificate } from "./handshake.js";

type SecureConnector = ReturnType<ChannelCredentials["_createSecureConnector"]>;
type ConnectorArgs = Parameters<ChannelCredentials["_createSecureConnector"]>;

/** ATLSClientOptions configure createATLSChannelCredentials. */
export interface ATLSClientOptions {
  /** requireFresh makes validators demand an uninitialized peer (activation); undefined: false. */
  requireFresh?: boolean;
  /**
   * onVerified is called with the verdict of every accepted connection, before gRPC uses it. It may
   * throw to refuse the connection (e.g. an extra policy); the call then fails with check "policy".
   */
  onVerified?: (verdict: Verdict, certificate: AttestedCertificate) => void;
  /** now returns ms since the epoch for the certificate validity check; undefined: Date.now. */
  now?: () => number;
  /**
   * onConnected sees every accepted connection's TLS socket before gRPC uses it, so the owner of a
   * channel can bind caller proofs to the connection its calls go over (exported keying material).
   */
  onConnected?: (socket: TLSSocket) => void;
}

/**
 * ATLSChannelCredentials are grpc-js channel credentials that accept a server only after a
 * successful aTLS handshake (see createATLSChannelCredentials). Equal only to themselves, so
 * channels with different validators never share a connection. Safe to share between channels.
 */
export class ATLSChannelCredentials extends ChannelCredentials {
  #lastError: ATLSError | undefined;
  readonly #validators: readonly Validator[];
  readonly #options: ATLSClientOptions;

  constructor(validators: readonly Validator[], options: ATLSClientOptions = {}) {
    super();
    if (validators.length === 0) throw new RangeError("aTLS client: at least one validator is required");
    this.#validators = [...validators];
    this.#options = options;
  }

  /**
   * lastError is the most recent handshake failure of any connection made with these credentials.
   * grpc-js already puts its message in the failed RPC's details (see atlsReasonOf); this keeps the
   * typed error (its `check`) for callers that want to branch on it.
   */
  get lastError(): ATLSError | undefined {
    return this.#lastError;
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: ChannelCredentials): boolean {
    return this === other;
  }

  override _createSecureConnector(_target: ConnectorArgs[0], _options: ConnectorArgs[1], callCredentials?: CallCredentials): SecureConnector {
    const creds = callCredentials ?? CallCredentials.createEmpty();
    return {
      connect: async (socket) => {
        try {
          const conn = await attestedHandshake(socket, {
            validators: this.#validators,
            requireFresh: this.#options.requireFresh,
            now: this.#options.now,
            onVerified: this.#options.onVerified,
            requireH2: true,
          });
          this.#options.onConnected?.(conn.socket);
          return { socket: conn.socket, secure: true };
        } catch (err) {
          if (err instanceof ATLSError) this.#lastError = err;
          throw err;
        }
      },
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => creds,
      destroy: () => {},
    };
  }
}

/**
 * createATLSChannelCredentials returns channel credentials for gRPC clients of attested servers.
 * Every connection sends a fresh 32-byte nonce as SNI and is accepted only if the server's
 * certificate is self-signed and valid now, carries an attestation extension for one of
 * `validators`, and that validator's verdict on the document (bound to the nonce and the
 * certificate key's SPKI hash) is ok. A refused connection fails RPCs with UNAVAILABLE whose
 * details contain the ATLSError message, e.g.
 * `No connection established. Last error: aTLS: tpm nonce: …. Resolution note: `.
 */
export function createATLSChannelCredentials(validators: readonly Validator[], options?: ATLSClientOptions): ATLSChannelCredentials {
  return new ATLSChannelCredentials(validators, options);
}
