import * as grpc from "@grpc/grpc-js";
import { CoreError, errorMessage, type CoreErrorCode } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

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

/**
 * toStatus turns any error into a gRPC status at the server edge: CoreErrors keep their code and
 * message; anything else becomes INTERNAL with the operation's name (logged with its detail).
 */
export function toStatus(err: unknown, operation: string, logger: Logger): Partial<grpc.StatusObject> {
  if (err instanceof CoreError) return { code: toGrpc[err.code], details: err.message };
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

/** unaryCall promisifies a grpc-js unary method with a deadline. */
export function unaryCall<Req, Res>(
  client: grpc.Client,
  method: string,
  request: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, Function>)[method];
    if (typeof fn !== "function") {
      reject(new Error(`no method ${method}`));
      return;
    }
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}
