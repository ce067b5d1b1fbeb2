import * as grpc from "@grpc/grpc-js";
import { atlsReasonOf } from "../atls/errors.js";
import { CoreError, PermissionDeniedError } from "../core/errors.js";
import { fromServiceError } from "../rpc/status.js";

/**
 * pubapiError turns a client-side pubapi failure into a CoreError naming the operation. A failed
 * aTLS handshake (which grpc-js reports as UNAVAILABLE) becomes PermissionDeniedError carrying the
 * check that failed, since retrying against the same peer cannot help.
 */
export function pubapiError(err: unknown, operation: string): CoreError {
  const e = err as Partial<grpc.ServiceError>;
  if (e && e.code === grpc.status.UNAVAILABLE && typeof e.details === "string") {
    const reason = atlsReasonOf(e.details);
    // No cause: grpc-js's wrapper would only repeat the reason with transport noise in messages.
    if (reason) return new PermissionDeniedError(`${operation}: ${reason}`);
  }
  return fromServiceError(err, operation);
}
