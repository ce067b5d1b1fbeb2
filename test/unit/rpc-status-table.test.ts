/**
 * One error model: every layer's error class reaches the wire with the status its cause deserves
 * (regression: a pushed disk key that does not open the disk became INTERNAL and was retried forever).
 */
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { NativeError } from "../../src/attestation/native.js";
import { CoreError, PermissionDeniedError, UnavailableError } from "../../src/core/errors.js";
import { nullLogger } from "../../src/shared/logger.js";
import {
  AlreadyFormattedError, CorruptMetadataError, DeviceBusyError, DeviceNotBlankError, DeviceNotFoundError, KeyFileNotFoundError, LUKSVersionError,
  NoFreeKeyslotError, NotLUKSError, WrongKeyError,
} from "../../src/diskencryption/errors.js";
import { coreCodeOf, fromServiceError, toStatus } from "../../src/rpc/status.js";
import { WireGuardError } from "../../src/wireguard/errors.js";

const cases: Array<[string, unknown, grpc.status]> = [
  ["core PermissionDeniedError", new PermissionDeniedError("no"), grpc.status.PERMISSION_DENIED],
  ["core UnavailableError", new UnavailableError("later"), grpc.status.UNAVAILABLE],
  ["disk WrongKeyError (a pushed key that does not open the disk)", new WrongKeyError("/dev/vda", "no keyslot opens"), grpc.status.PERMISSION_DENIED],
  ["disk DeviceNotFoundError", new DeviceNotFoundError("/dev/vda", "gone"), grpc.status.NOT_FOUND],
  ["disk NotLUKSError", new NotLUKSError("/dev/vda", "not luks"), grpc.status.FAILED_PRECONDITION],
  ["disk LUKSVersionError", new LUKSVersionError("/dev/vda", "luks1"), grpc.status.FAILED_PRECONDITION],
  ["disk KeyFileNotFoundError", new KeyFileNotFoundError("/dev/vda", "no file"), grpc.status.NOT_FOUND],
  ["disk NoFreeKeyslotError", new NoFreeKeyslotError("/dev/vda", "full"), grpc.status.RESOURCE_EXHAUSTED],
  ["disk AlreadyFormattedError", new AlreadyFormattedError("/dev/vda", "formatted"), grpc.status.ALREADY_EXISTS],
  ["disk DeviceBusyError", new DeviceBusyError("/dev/vda", "busy"), grpc.status.UNAVAILABLE],
  ["disk DeviceNotBlankError", new DeviceNotBlankError("/dev/vda", "data"), grpc.status.FAILED_PRECONDITION],
  ["disk CorruptMetadataError", new CorruptMetadataError("/dev/vda", "bad header"), grpc.status.INTERNAL],
  ["WireGuard invalid-argument", new WireGuardError("invalid-argument", "peers[0]: bad key"), grpc.status.INVALID_ARGUMENT],
  ["WireGuard busy", new WireGuardError("busy", "port taken"), grpc.status.UNAVAILABLE],
  ["WireGuard apply-failed", new WireGuardError("apply-failed", "rolled back"), grpc.status.ABORTED],
  ["WireGuard timeout", new WireGuardError("timeout", "slow"), grpc.status.DEADLINE_EXCEEDED],
  ["WireGuard tool-missing", new WireGuardError("tool-missing", "no wg"), grpc.status.FAILED_PRECONDITION],
  ["native, TPM asks for a retry", new NativeError("TPM retry", Object.assign(new Error("retry"), { call: "Esys_Quote", rc: 0x922 })), grpc.status.UNAVAILABLE],
  ["native, final", new NativeError("TPM failure", Object.assign(new Error("failure"), { call: "Esys_Quote", rc: 0x101 })), grpc.status.INTERNAL],
  ["plain Error", new Error("boom"), grpc.status.INTERNAL],
  ["an errno error (its code is not a core code)", Object.assign(new Error("ENOENT: x"), { code: "ENOENT" }), grpc.status.INTERNAL],
  ["not an Error", "a string", grpc.status.INTERNAL],
];

describe("one error model: rpc/status.ts", () => {
  for (const [name, err, want] of cases) {
    it(`${name} → ${grpc.status[want]}, and back to the same core code on the client`, () => {
      const st = toStatus(err, "PushStateDiskKey", nullLogger);
      expect(st.code).toBe(want);
      expect(st.details).toContain(want === grpc.status.INTERNAL && !(err instanceof CoreError) ? "internal error" : "");
      const back = fromServiceError({ code: st.code, details: st.details }, "PushStateDiskKey 192.0.2.1:9000");
      expect(back.code).toBe(coreCodeOf(err));
    });
  }
});
