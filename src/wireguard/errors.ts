/**
 * Typed errors of the WireGuard layer. Every error names its cause in `code` and says whether a
 * retry can help; callers (the core's update loop, meshd's wiring) decide on `code`/`retryable`
 * and never parse messages. Messages never contain private keys.
 */

/** WireGuardErrorCode classifies why a WireGuard operation failed. */
export type WireGuardErrorCode =
  /** A key, address, peer set or option is malformed; the message names the field. */
  | "invalid-argument"
  /** The process lacks root / CAP_NET_ADMIN for the operation. */
  | "permission-denied"
  /** A required program (`wireguard-go`, `wg`, `ip`) is not installed. */
  | "tool-missing"
  /** The requested backend cannot work here (no kernel WireGuard module). */
  | "unsupported"
  /** The interface (or its UAPI socket / wireguard-go process) does not exist. */
  | "interface-missing"
  /** An interface of that name exists but is not a WireGuard device. */
  | "not-wireguard"
  /** The interface or listen port is already used by someone else. */
  | "busy"
  /** The device rejected a change; the previous configuration was restored and verified. */
  | "apply-failed"
  /** A change failed and the previous configuration could not be restored or verified. */
  | "inconsistent"
  /** A command or socket exchange did not finish in time. */
  | "timeout"
  /** The device was not started yet, or was closed. */
  | "closed"
  /** Anything else a local command reported. */
  | "internal";

const retryableCodes: ReadonlySet<WireGuardErrorCode> = new Set(["inconsistent", "timeout", "busy", "internal"]);

/**
 * WireGuardError is the only error class src/wireguard throws on purpose. `retryable` says whether
 * repeating the same call later may succeed without a change by the caller.
 */
export class WireGuardError extends Error {
  /** code classifies the failure. */
  readonly code: WireGuardErrorCode;
  /** retryable says whether the same call may succeed later. */
  readonly retryable: boolean;

  constructor(code: WireGuardErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "WireGuardError";
    this.code = code;
    this.retryable = options?.retryable ?? retryableCodes.has(code);
  }
}

/** invalidArgument returns a WireGuardError("invalid-argument") whose message starts with `field`. */
export function invalidArgument(field: string, problem: string): WireGuardError {
  return new WireGuardError("invalid-argument", `${field}: ${problem}`);
}
