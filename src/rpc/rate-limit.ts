import * as grpc from "@grpc/grpc-js";
import { systemClock, type Clock } from "../core/clock.js";
import { KeyedTokenBuckets } from "../core/token-bucket.js";

/** CallerRateLimitOptions size the per-caller limit; every field has a default. */
export interface CallerRateLimitOptions {
  /** burst is how many calls one address may make at once; undefined: 64. */
  burst?: number;
  /** perSecond is the sustained calls per second of one address; undefined: 32. */
  perSecond?: number;
  /** maxKeys bounds the tracked addresses; undefined: 4096. */
  maxKeys?: number;
  clock?: Clock;
}

/** callerAddress is the IP of a call's TCP peer ("unknown" when grpc-js does not know it). */
function callerAddress(call: grpc.ServerInterceptingCallInterface): string {
  return call.getConnectionInfo().remoteAddress ?? "unknown";
}

/**
 * callerRateLimit returns a grpc-js server interceptor that bounds calls per remote IP with a token
 * bucket: past it a call ends at once with RESOURCE_EXHAUSTED, before its handler runs or its
 * request is read. Give it to `new grpc.Server({ interceptors: [...] })`. Safe for concurrent use.
 */
export function callerRateLimit(options: CallerRateLimitOptions = {}): grpc.ServerInterceptor {
  const buckets = new KeyedTokenBuckets({
    burst: options.burst ?? 64,
    perSecond: options.perSecond ?? 32,
    ...(options.maxKeys ? { maxKeys: options.maxKeys } : {}),
    clock: options.clock ?? systemClock,
  });
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, passOn) => {
            const address = callerAddress(call);
            if (buckets.take(address)) passOn(metadata);
            else call.sendStatus({ code: grpc.status.RESOURCE_EXHAUSTED, details: `rate limit: too many calls from ${address}; retry later` });
          },
        });
      },
    });
}
