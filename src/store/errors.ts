/**
 * Errors of the etcd store, mapped once from what the `etcd3` client throws to core's typed errors,
 * because core (runTransaction, the pubapi edge) decides on the class and `retryable`, never on
 * etcd3's classes or messages:
 *
 * | etcd3 / etcd                                             | core error         | retry helps? |
 * |----------------------------------------------------------|--------------------|--------------|
 * | a Txn whose compares failed (see store-etcd.ts)          | ConflictError      | yes: rerun the transaction |
 * | read revision compacted ("required revision has been compacted") | ConflictError | yes: read the current revision (etcd-transaction.ts does) |
 * | UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, open circuit breaker, "no leader", "leader changed", "request timed out", "too many requests" | UnavailableError (names the endpoints) | yes, later |
 * | "too many operations in txn request", "request is too large", "duplicate key" | InternalError | no: the transaction must be smaller (etcd --max-txn-ops / --max-request-bytes) |
 * | "database space exceeded" (NOSPACE alarm)                | InternalError      | no: an operator must compact, defragment and disarm |
 * | permission denied, authentication failures               | InternalError      | no: etcd's RBAC must grant the namespace |
 * | client closed                                            | InternalError      | no |
 * | anything else                                            | InternalError (cause kept) | no |
 */
import { ClientClosedError, EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdPermissionDeniedError, isRecoverableError } from "etcd3";
import { ConflictError, CoreError, InternalError, UnavailableError } from "../core/errors.js";

/** conflictMessage matches etcd's answers that mean "start the transaction again". */
const conflictMessage = /required revision has been compacted/;
/** unavailableMessage matches etcd's answers of a member that cannot serve right now. */
const unavailableMessage = /no leader|leader changed|request timed out|too many requests|not capable|ECONNREFUSED|ECONNRESET|ETIMEDOUT/i;
/** tooLargeMessage matches a transaction etcd refuses because of its size. */
const tooLargeMessage = /too many operations in txn request|request is too large|duplicate key given in txn request/;

/**
 * storeErrorOf maps anything an etcd call threw to a core error. `op` names the operation
 * ("store get cluster/clusterID"), `endpoints` the etcd endpoints (named in unavailability errors so
 * an operator knows which cluster is meant). Core errors pass through unchanged.
 */
export function storeErrorOf(op: string, endpoints: readonly string[], err: unknown): CoreError {
  if (err instanceof CoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const where = `etcd ${endpoints.join(", ")}`;
  if (conflictMessage.test(message)) {
    return new ConflictError(`${op}: the transaction's snapshot revision was compacted away`, { cause: err });
  }
  if (err instanceof ClientClosedError) return new InternalError(`${op}: store closed`, { cause: err });
  if (err instanceof EtcdPermissionDeniedError || err instanceof EtcdAuthenticationFailedError || err instanceof EtcdInvalidAuthTokenError) {
    return new InternalError(`${op}: ${where} refused access (etcd's RBAC must grant this namespace): ${message}`, { cause: err });
  }
  if (tooLargeMessage.test(message)) {
    return new InternalError(`${op}: ${where} refused the transaction as too large: ${message}`, { cause: err });
  }
  if (/database space exceeded/.test(message)) {
    return new InternalError(`${op}: ${where} is out of space (NOSPACE alarm; an operator must compact, defragment and disarm): ${message}`, { cause: err });
  }
  if (isBrokenCircuit(err)) {
    return new UnavailableError(`${op}: ${where} unreachable (failed repeatedly; calls are paused for a few seconds)`, { cause: err });
  }
  if ((err instanceof Error && isRecoverableError(err)) || unavailableMessage.test(message)) {
    return new UnavailableError(`${op}: ${where} unreachable: ${message}`, { cause: err });
  }
  return new InternalError(`${op}: ${where}: ${message}`, { cause: err });
}

/** isBrokenCircuit recognises cockatiel's BrokenCircuitError (etcd3's per-host circuit breaker) without importing cockatiel. */
function isBrokenCircuit(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true;
}
