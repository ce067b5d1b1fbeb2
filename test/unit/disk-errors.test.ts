import { describe, expect, it } from "vitest";
import {
  CryptsetupError,
  DeviceBusyError,
  DeviceNotFoundError,
  DiskError,
  errorForExit,
  NoFreeKeyslotError,
  NotLUKSError,
  redactKeys,
  WrongKeyError,
} from "../../src/diskencryption/errors.js";

const dev = "/dev/vdb";

describe("errorForExit maps cryptsetup exit statuses", () => {
  const cases: {
    name: string;
    exit: number;
    stderr: string;
    keyContext: boolean;
    cls: new (...a: never[]) => DiskError;
    reason: string;
    retryable: boolean;
    code: string;
  }[] = [
    { name: "1 wrong parameters", exit: 1, stderr: "Unknown option.", keyContext: false, cls: CryptsetupError, reason: "invalid-argument", retryable: false, code: "invalid-argument" },
    { name: "2 with a key: wrong key", exit: 2, stderr: "No key available with this passphrase.", keyContext: true, cls: WrongKeyError, reason: "wrong-key", retryable: false, code: "permission-denied" },
    { name: "2 without a key: permission", exit: 2, stderr: "", keyContext: false, cls: CryptsetupError, reason: "permission-denied", retryable: false, code: "permission-denied" },
    { name: "3 out of memory (retryable)", exit: 3, stderr: "Not enough available memory to open a keyslot.", keyContext: true, cls: CryptsetupError, reason: "out-of-memory", retryable: true, code: "resource-exhausted" },
    { name: "4 wrong device", exit: 4, stderr: "Device /dev/vdb does not exist or access denied.", keyContext: false, cls: DeviceNotFoundError, reason: "device-not-found", retryable: false, code: "not-found" },
    { name: "5 busy (retryable)", exit: 5, stderr: "Device state is busy.", keyContext: false, cls: DeviceBusyError, reason: "device-busy", retryable: true, code: "unavailable" },
    { name: "unknown status: internal", exit: 137, stderr: "", keyContext: false, cls: CryptsetupError, reason: "internal", retryable: false, code: "internal" },
    { name: "not a LUKS device by message", exit: 1, stderr: "Device /dev/vdb is not a valid LUKS device.", keyContext: false, cls: NotLUKSError, reason: "not-luks", retryable: false, code: "failed-precondition" },
    { name: "no space for a keyslot by message", exit: 1, stderr: "No space for new keyslot.", keyContext: true, cls: NoFreeKeyslotError, reason: "no-free-keyslot", retryable: false, code: "resource-exhausted" },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const err = errorForExit(tc.exit, tc.stderr, { op: "update passphrase", device: dev, keyContext: tc.keyContext });
      expect(err).toBeInstanceOf(tc.cls);
      expect(err.reason).toBe(tc.reason);
      expect(err.code).toBe(tc.code);
      expect(err.retryable).toBe(tc.retryable);
      expect(err.exitCode).toBe(tc.exit);
      expect(err.device).toBe(dev);
      expect(err.name).toBe(tc.cls.name);
      expect(err.message).toMatch(new RegExp(`^update passphrase /dev/vdb: .*cryptsetup exit ${tc.exit}`));
    });
  }

  it("drops cryptsetup's noise lines and keeps one line", () => {
    const err = errorForExit(2, "No usable token is available.\nNo key available with this passphrase.\nCommand failed with code -2 (x).\n", {
      op: "unlock",
      device: dev,
      keyContext: true,
    });
    expect(err.message).toBe(
      "unlock /dev/vdb: the key opens no keyslot; cryptsetup exit 2 (no permission or bad passphrase): No key available with this passphrase.",
    );
  });

  it("scrubs the keys it is given from cryptsetup's words", () => {
    const key = Buffer.from("super-secret-key-bytes");
    const err = errorForExit(1, `weird echo super-secret-key-bytes and ${key.toString("hex")}`, {
      op: "x",
      device: dev,
      keyContext: true,
      keys: [key],
    });
    expect(err.message).not.toContain("super-secret");
    expect(err.message).not.toContain(key.toString("hex"));
    expect(err.message).toContain("[redacted]");
  });
});

describe("redactKeys", () => {
  const key = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x41, 0x42, 0x43, 0x44]);
  const cases: { name: string; text: string; keys: Uint8Array[]; want: string }[] = [
    { name: "hex", text: "k=deadbeef41424344.", keys: [key], want: "k=[redacted]." },
    { name: "upper hex", text: "DEADBEEF41424344", keys: [key], want: "[redacted]" },
    { name: "base64", text: `x ${key.toString("base64")} y`, keys: [key], want: "x [redacted] y" },
    { name: "raw latin1", text: `a${key.toString("latin1")}b`, keys: [key], want: "a[redacted]b" },
    { name: "short keys ignored", text: "abc", keys: [Buffer.from("abc")], want: "abc" },
    { name: "no keys", text: "plain text", keys: [], want: "plain text" },
  ];
  for (const tc of cases) it(tc.name, () => expect(redactKeys(tc.text, tc.keys)).toBe(tc.want));
});
