import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../shared/logger.js";

/**
 * Who a successful call of each method has proven to be (the handlers refuse anyone else). Methods
 * not listed may be called by anyone: their caller is "unauthenticated" even when they succeed.
 */
const provenBy: Record<string, string> = {
  // pubapi: admin requests carry the admin key's signature over a single-use challenge.
  ActivateAdditionalNodes: "admin (signed request)",
  ActivateAdditionalCoordinator: "admin (signed request)",
  RemoveNode: "admin (signed request)",
  RemoveCoordinator: "admin (signed request)",
  // meshctl recover signs the connection with the cluster credential derived from the master secret.
  RecoverStateDiskKey: "admin (cluster credential)",
  // Coordinator → peer calls prove attested evidence bound to this connection (and the cluster credential once activated).
  ActivateAsNode: "Coordinator (attested on this connection)",
  ActivateAsAdditionalCoordinator: "Coordinator (attested on this connection)",
  JoinCluster: "Coordinator of this cluster (attested, cluster credential)",
  TriggerNodeUpdate: "Coordinator of this cluster (attested, cluster credential)",
  PushStateDiskKey: "Coordinator of this cluster (attested, cluster credential)",
};

/** refusals are the codes that mean "not for you" or "not like this" (logged as warnings). */
const refusals = new Set([
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.NOT_FOUND,
  grpc.status.RESOURCE_EXHAUSTED,
]);

/** AuditOptions tune auditLog. */
export interface AuditOptions {
  /**
   * vpn: the server is the vpnapi, whose callers are identified by their VPN source address, which
   * WireGuard authenticates (cryptokey routing, and meshd's filter drops the public side).
   */
  vpn?: boolean;
  /** quiet says a successful call of this method is logged at debug only (the vpnapi's unchanged polls). */
  quiet?: (method: string) => boolean;
  now?: () => number;
}

/**
 * auditLog returns a grpc-js server interceptor that logs every call once, when its status is
 * sent, as a JSON line with `audit: true`: method, caller (the identity a successful call proved,
 * or "unauthenticated"; always the address), gRPC status code, duration and, for a refusal, its
 * details, which name the failed check. Nothing of the request or response is logged (secrets
 * travel in some). Put it first in the server's interceptors so it also sees calls an inner
 * interceptor refuses (the rate limit).
 */
export function auditLog(logger: Logger, options: AuditOptions = {}): grpc.ServerInterceptor {
  const now = options.now ?? Date.now;
  return (descriptor, call) => {
    const started = now();
    const method = descriptor.path.slice(descriptor.path.lastIndexOf("/") + 1);
    let done = false;
    return new grpc.ServerInterceptingCall(call, {
      sendStatus: (status, next) => {
        if (!done) {
          done = true;
          const ok = status.code === grpc.status.OK;
          const address = call.getConnectionInfo().remoteAddress ?? "unknown";
          const who = options.vpn ? `VPN peer ${address} (WireGuard)` : ok && provenBy[method] ? `${provenBy[method]} at ${address}` : `unauthenticated ${address}`;
          const fields = {
            audit: true,
            method,
            caller: who,
            code: grpc.status[status.code] ?? String(status.code),
            durationMs: now() - started,
            ...(ok ? {} : { refusal: status.details.slice(0, 600) }),
          };
          if (ok && options.quiet?.(method)) logger.debug("rpc", fields);
          else if (ok) logger.info("rpc", fields);
          else if (refusals.has(status.code)) logger.warn("rpc refused", fields);
          else logger.info("rpc failed", fields);
        }
        next(status);
      },
    });
  };
}
