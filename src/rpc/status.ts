import * as grpc from "@grpc/grpc-js";
import { NativeError } from "../attestation/native.js";
import { CoreError, errorMessage, type CoreErrorCode } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import { DiskError } from "../diskencryption/errors.js";
import { WireGuardError, type WireGuardErrorCode } from "../wireguard/errors.js";

const toGrpc: Record<CoreErrorCode, grpc.status> = {
  "invalid-argument": grpc.status.INVALID_ARGUMENT,
  "failed-precondition": grpc.status.FAILED_PRECONDITION,
  "not-found": grpc.status.NOT_FOUND,
  "already-exists": grpc.status.ALREADY_EXISTS,
  "permission-denied": grpc.status.PERMISSION_DENIED,
  "resource-exhausted": grpc.status.RESOURCE_EXHAUSTED,
  unavailable: grpc.status.UNAVAILABLE,
  "deadline-exceeded": grpc.status.DEADLINE_EXCEEDED,
  aborted: grpc.status.ABORTED,
  internal: grpc.status.INTERNAL,
};

const fromGrpc = new Map<grpc.status, CoreErrorCode>(Object.entries(toGrpc).map(([k, v]) => [v, k as CoreErrorCode]));

/** wireGuardCodes maps the WireGuard layer's codes to core's. */
const wireGuardCodes: Record<WireGuardErrorCode, CoreErrorCode> = {
  "invalid-argument": "invalid-argument",
  "permission-denied": "permission-denied",
  "tool-missing": "failed-precondition",
  unsupported: "failed-precondition",
  "interface-missing": "failed-precondition",
  "not-wireguard": "failed-precondition",
  busy: "unavailable",
  "apply-failed": "aborted",
  inconsistent: "internal",
  timeout: "deadline-exceeded",
  closed: "unavailable",
  internal: "internal",
};

/**
 * coreCodeOf is the one table from every layer's errors to core's codes: core errors keep theirs,
 * disk errors carry theirs (a pushed key that does not open the disk is permission-denied, final,
 * not an internal error retried forever), WireGuard errors map through wireGuardCodes, a native
 * (TPM, SNP) failure is unavailable when the device asked for a retry; anything else is internal.
 */
export function coreCodeOf(err: unknown): CoreErrorCode {
  if (err instanceof CoreError || err instanceof DiskError) return err.code;
  if (err instanceof WireGuardError) return wireGuardCodes[err.code];
  if (err instanceof NativeError) return err.retryable ? "unavailable" : "internal";
  return "internal";
}

/**
 * toStatus turns any error into a gRPC status at the server edge, its code from coreCodeOf. Errors
 * of our own layers keep their message; anything else is INTERNAL with the operation's name
 * (logged with its detail).
 */
export function toStatus(err: unknown, operation: string, logger: Logger): Partial<grpc.StatusObject> {
  const code = coreCodeOf(err);
  if (err instanceof CoreError) return { code: toGrpc[code], details: err.message };
  if (code !== "internal") return { code: toGrpc[code], details: `${operation}: ${errorMessage(err)}` };
  logger.error(`${operation}: internal error`, { error: errorMessage(err) });
  return { code: grpc.status.INTERNAL, details: `${operation}: internal error: ${errorMessage(err)}` };
}

/** fromServiceError turns a client-side gRPC error into a CoreError naming the operation and the peer. */
export function fromServiceError(err: unknown, operation: string): CoreError {
  if (err instanceof CoreError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number") {
    const code = fromGrpc.get(e.code) ?? (e.code === grpc.status.CANCELLED ? "unavailable" : "internal");
    return new CoreError(code, `${operation}: ${e.details || grpc.status[e.code]}`, { cause: err });
  }
  return new CoreError("internal", `${operation}: ${errorMessage(err)}`, { cause: err });
}

/** UnarySignature is the last overload the generator writes for a unary method: (request, callback). */
type UnarySignature<Req, Res> = (argument: Req, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;
/** UnaryMethod names the unary methods of a generated client C. */
export type UnaryMethod<C> = { [K in keyof C & string]: C[K] extends UnarySignature<infer _Req, infer _Res> ? K : never }[keyof C & string];
/** UnaryRequest and UnaryResponse are method K's messages, as the generated client C types them. */
export type UnaryRequest<C, K extends keyof C> = C[K] extends UnarySignature<infer Req, infer _Res> ? Req : never;
export type UnaryResponse<C, K extends keyof C> = C[K] extends UnarySignature<infer _Req, infer Res> ? Res : never;

/**
 * unaryCall runs unary `method` of a generated client with a deadline and resolves with its
 * response; request and response are typed by the proto (src/gen).
 */
export function unaryCall<C extends grpc.Client, K extends UnaryMethod<C>>(client: C, method: K, request: UnaryRequest<C, K>, timeoutMs: number): Promise<UnaryResponse<C, K>> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as (argument: UnaryRequest<C, K>, options: grpc.CallOptions, callback: grpc.requestCallback<UnaryResponse<C, K>>) => grpc.ClientUnaryCall;
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else if (res === undefined) reject(new Error(`${method}: the call ended without a response`));
      else resolve(res);
    });
  });
}

/**
 * unaryHandler serves a unary method with `fn`, which may return or throw (synchronously too):
 * either way the caller gets the response or the error's status (toStatus, logged on `log`), never
 * UNKNOWN from an escaped throw.
 */
export function unaryHandler<Req, Res>(op: string, log: Logger, fn: (call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    Promise.resolve()
      .then(() => fn(call))
      .then(
        (res) => cb(null, res),
        (err: unknown) => cb(toStatus(err, op, log) as grpc.ServiceError, null),
      );
  };
}
