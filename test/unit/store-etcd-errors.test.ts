import { EtcdError, EtcdPermissionDeniedError, GRPCDeadlineExceededError, GRPCOutOfRangeError, GRPCUnavailableError } from "etcd3";
import { describe, expect, it } from "vitest";
import { ConflictError, CoreError, InternalError, NotFoundError, UnavailableError } from "../../src/core/errors.js";
import { storeErrorOf } from "../../src/store/errors.js";

const endpoints = ["10.0.0.1:2379", "10.0.0.2:2379"];

describe("storeErrorOf maps etcd3 errors to core errors once", () => {
  const cases: Array<{ name: string; err: unknown; want: new (...args: never[]) => CoreError; retryable: boolean; msg: RegExp }> = [
    { name: "unreachable member", err: new GRPCUnavailableError("14 UNAVAILABLE: No connection established"), want: UnavailableError, retryable: true, msg: /10\.0\.0\.1:2379, 10\.0\.0\.2:2379 unreachable/ },
    { name: "deadline", err: new GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED: Deadline exceeded"), want: UnavailableError, retryable: true, msg: /unreachable/ },
    { name: "no leader", err: new EtcdError("etcdserver: no leader"), want: UnavailableError, retryable: true, msg: /no leader/ },
    { name: "open circuit breaker", err: Object.assign(new Error("Execution prevented because the circuit breaker is open"), { isBrokenCircuitError: true }), want: UnavailableError, retryable: true, msg: /failed repeatedly/ },
    { name: "compacted snapshot", err: new GRPCOutOfRangeError("etcdserver: mvcc: required revision has been compacted"), want: ConflictError, retryable: true, msg: /compacted/ },
    { name: "transaction too large", err: new EtcdError("etcdserver: too many operations in txn request"), want: InternalError, retryable: false, msg: /too large/ },
    { name: "no space", err: new EtcdError("etcdserver: mvcc: database space exceeded"), want: InternalError, retryable: false, msg: /operator/ },
    { name: "permission denied", err: new EtcdPermissionDeniedError("etcdserver: permission denied"), want: InternalError, retryable: false, msg: /RBAC/ },
    { name: "anything else", err: new Error("weird"), want: InternalError, retryable: false, msg: /store get k: etcd .*: weird/ },
    { name: "core errors pass through", err: new NotFoundError("nope"), want: NotFoundError, retryable: false, msg: /^nope$/ },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const got = storeErrorOf("store get k", endpoints, tc.err);
      expect(got).toBeInstanceOf(tc.want);
      expect(got.retryable).toBe(tc.retryable);
      expect(got.message).toMatch(tc.msg);
      if (!(tc.err instanceof CoreError)) expect(got.cause).toBe(tc.err);
    });
  }
});
