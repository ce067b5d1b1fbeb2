/**
 * Typed errors of the core. Every error says whether a retry can help; transports map the
 * `code` to their own status codes once, at the edge (pubapi/vpnapi), and never inspect messages.
 */

/** CoreErrorCode names the failure class; it maps 1:1 to a gRPC status code at the edge. */
export type CoreErrorCode =
  | "invalid-argument"
  | "failed-precondition"
  | "not-found"
  | "already-exists"
  | "permission-denied"
  | "resource-exhausted"
  | "unavailable"
  | "deadline-exceeded"
  | "aborted"
  | "internal";

/** CoreError is the base of every error the core throws on purpose. */
export class CoreError extends Error {
  /** code classifies the error for transports. */
  readonly code: CoreErrorCode;
  /** retryable says whether the same call may succeed later without a change by the caller. */
  readonly retryable: boolean;

  constructor(code: CoreErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? (code === "unavailable" || code === "aborted" || code === "deadline-exceeded");
  }
}

/** InvalidArgumentError: the caller sent something malformed; the message names the field. */
export class InvalidArgumentError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("invalid-argument", message, options);
  }
}

/** FailedPreconditionError: the call is not allowed in the peer's current state. */
export class FailedPreconditionError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("failed-precondition", message, options);
  }
}

/** NotFoundError: the named thing does not exist. */
export class NotFoundError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("not-found", message, options);
  }
}

/** PermissionDeniedError: the caller may not have what it asked for. */
export class PermissionDeniedError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("permission-denied", message, options);
  }
}

/** ResourceExhaustedError: a finite resource (an IP pool) has no more room. */
export class ResourceExhaustedError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("resource-exhausted", message, options);
  }
}

/** UnavailableError: a dependency (a peer, the store) cannot be reached now; retrying may help. */
export class UnavailableError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

/** ConflictError: a store transaction lost a race with another writer; retry the whole transaction. */
export class ConflictError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("aborted", message, options);
  }
}

/** InternalError: a bug or an unexpected failure of a local component. */
export class InternalError extends CoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("internal", message, options);
  }
}

/** errorMessage renders any thrown value as one line, following `cause` chains. */
export function errorMessage(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 8; depth++) {
    const msg = cur instanceof Error ? cur.message : typeof cur === "string" ? cur : JSON.stringify(cur) ?? typeof cur;
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? (cur as { cause?: unknown }).cause : undefined;
  }
  return parts.join(": ").replace(/\s*\n\s*/g, " ");
}

/** wrapError prefixes an error with the operation, keeping its class (and so its status code) when it is a CoreError. */
export function wrapError(operation: string, err: unknown): Error {
  if (err instanceof CoreError) return new CoreError(err.code, `${operation}: ${err.message}`, { cause: err, retryable: err.retryable });
  return new InternalError(`${operation}: ${errorMessage(err)}`, { cause: err });
}
