/**
 * Typed errors of the disk-encryption layer. Every error names the device and the cause, says
 * whether a retry can help, and never carries key bytes: messages are built from our own words,
 * cryptsetup's stderr (scrubbed with {@link redactKeys}) and paths — keys only ever travel on a
 * child's stdin.
 */
import type { CoreErrorCode } from "../core/errors.js";

/** DiskErrorReason names the failure class of a {@link DiskError}. */
export type DiskErrorReason =
  | "device-not-found"
  | "not-luks"
  | "unsupported-luks-version"
  | "wrong-key"
  | "key-file-not-found"
  | "no-free-keyslot"
  | "already-formatted"
  | "device-busy"
  | "permission-denied"
  | "out-of-memory"
  | "invalid-argument"
  | "timeout"
  | "cryptsetup-not-found"
  | "device-not-blank"
  | "corrupt-metadata"
  | "command-failed"
  | "internal";

const codeOf: Record<DiskErrorReason, CoreErrorCode> = {
  "device-not-found": "not-found",
  "not-luks": "failed-precondition",
  "unsupported-luks-version": "failed-precondition",
  "wrong-key": "permission-denied",
  "key-file-not-found": "not-found",
  "no-free-keyslot": "resource-exhausted",
  "already-formatted": "already-exists",
  "device-busy": "unavailable",
  "permission-denied": "permission-denied",
  "out-of-memory": "resource-exhausted",
  "invalid-argument": "invalid-argument",
  timeout: "deadline-exceeded",
  "cryptsetup-not-found": "failed-precondition",
  "device-not-blank": "failed-precondition",
  "corrupt-metadata": "internal",
  "command-failed": "internal",
  internal: "internal",
};

/**
 * DiskError is the base of every error this layer throws on purpose. `code` uses core's vocabulary
 * so an edge can map it to a status code without knowing this layer; `retryable` says whether the
 * same call may succeed later without a change by the caller (a busy device, memory pressure).
 */
export class DiskError extends Error {
  /** reason classifies the failure. */
  readonly reason: DiskErrorReason;
  /** code is the matching core error code (for transports). */
  readonly code: CoreErrorCode;
  /** device is the device or file the operation was about, as given or resolved. */
  readonly device: string;
  /** exitCode is cryptsetup's exit status when the failure came from it. */
  readonly exitCode: number | undefined;
  /** retryable is true when retrying the same call may help. */
  readonly retryable: boolean;

  constructor(
    reason: DiskErrorReason,
    device: string,
    message: string,
    options?: { cause?: unknown; exitCode?: number; retryable?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.reason = reason;
    this.code = codeOf[reason];
    this.device = device;
    this.exitCode = options?.exitCode;
    this.retryable =
      options?.retryable ?? (reason === "device-busy" || reason === "out-of-memory" || reason === "timeout");
  }
}

/** DiskErrorOptions are the options of the concrete error classes: a cause and cryptsetup's exit status. */
export type DiskErrorOptions = { cause?: unknown; exitCode?: number };

/** DeviceNotFoundError: the device, file or mapping does not exist (or cannot be accessed). */
export class DeviceNotFoundError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("device-not-found", device, message, options);
  }
}

/** NotLUKSError: the device exists but holds no LUKS header. */
export class NotLUKSError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("not-luks", device, message, options);
  }
}

/** LUKSVersionError: the device holds a LUKS header of a version other than 2 (LUKS1). */
export class LUKSVersionError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("unsupported-luks-version", device, message, options);
  }
}

/** WrongKeyError: the key (or key file) given opens no keyslot of the device. */
export class WrongKeyError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("wrong-key", device, message, options);
  }
}

/** KeyFileNotFoundError: the initial key file does not exist. */
export class KeyFileNotFoundError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("key-file-not-found", device, message, options);
  }
}

/** NoFreeKeyslotError: the header has no free keyslot (or keyslot area) for the new key; nothing changed. */
export class NoFreeKeyslotError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("no-free-keyslot", device, message, options);
  }
}

/** AlreadyFormattedError: format() refused to overwrite an existing LUKS header. */
export class AlreadyFormattedError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("already-formatted", device, message, options);
  }
}

/** DeviceBusyError: cryptsetup reported the device busy or already present (exit 5); retryable. */
export class DeviceBusyError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("device-busy", device, message, options);
  }
}

/** DeviceNotBlankError: the device holds no LUKS2 header but is not blank either; it is never formatted over. */
export class DeviceNotBlankError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("device-not-blank", device, message, options);
  }
}

/** CorruptMetadataError: public metadata kept in the LUKS2 header (a bootstrap token) is malformed. */
export class CorruptMetadataError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("corrupt-metadata", device, message, options);
  }
}

/** TokenTooLargeError: a bootstrap token would not fit the LUKS2 header beside its keyslots; nothing was written. */
export class TokenTooLargeError extends DiskError {
  constructor(device: string, message: string, options?: DiskErrorOptions) {
    super("invalid-argument", device, message, options);
  }
}

/**
 * VolumeCommandError: a step of the state volume other than cryptsetup failed (blkid, mkfs.ext4,
 * mount, umount, findmnt, the mapping's device node not appearing); `reason` is "command-failed",
 * "timeout", "device-busy" or "invalid-argument".
 */
export class VolumeCommandError extends DiskError {}

/**
 * CryptsetupError: any other cryptsetup failure; `reason` tells which (exit 1 invalid-argument,
 * 2 permission-denied, 3 out-of-memory, timeout, cryptsetup-not-found, internal).
 */
export class CryptsetupError extends DiskError {}

/** exitCodeMeaning is cryptsetup(8)'s description of its exit statuses. */
export const exitCodeMeaning: Readonly<Record<number, string>> = {
  0: "success",
  1: "wrong parameters",
  2: "no permission or bad passphrase",
  3: "out of memory",
  4: "wrong device specified",
  5: "device already exists or device is busy",
};

/** ExitContext tells {@link errorForExit} what the failed command was about. */
export interface ExitContext {
  /** op names the operation for the message ("update passphrase"). */
  op: string;
  /** device is the device the command ran on. */
  device: string;
  /** keyContext is true when the command was given a key, so exit 2 means a wrong key. */
  keyContext: boolean;
  /** keys are scrubbed from stderr before it enters the message (defence in depth). */
  keys?: readonly Uint8Array[];
}

/**
 * errorForExit maps a failed cryptsetup run (exit status and stderr) to a typed error whose
 * message names the operation, the device, the exit status and its meaning, and cryptsetup's
 * own words (one line, key bytes removed). Pure.
 */
export function errorForExit(exitCode: number, stderr: string, ctx: ExitContext): DiskError {
  const said = oneLine(redactKeys(stderr, ctx.keys ?? []));
  const meaning = exitCodeMeaning[exitCode] ?? "unknown failure";
  const tail = `cryptsetup exit ${exitCode} (${meaning})${said ? `: ${said}` : ""}`;
  const msg = (cause: string): string => `${ctx.op} ${ctx.device}: ${cause}; ${tail}`;
  const opts = { exitCode };
  if (/No space for new keyslot|All key slots full/i.test(said)) {
    return new NoFreeKeyslotError(ctx.device, msg("no free keyslot (or keyslot area) for the new key; nothing changed"), opts);
  }
  if (/is not a valid LUKS device/i.test(said)) {
    return new NotLUKSError(ctx.device, msg("no LUKS header"), opts);
  }
  switch (exitCode) {
    case 1:
      return new CryptsetupError("invalid-argument", ctx.device, msg("cryptsetup refused the request"), opts);
    case 2:
      return ctx.keyContext
        ? new WrongKeyError(ctx.device, msg("the key opens no keyslot"), opts)
        : new CryptsetupError("permission-denied", ctx.device, msg("permission denied"), opts);
    case 3:
      return new CryptsetupError("out-of-memory", ctx.device, msg("out of memory"), opts);
    case 4:
      return new DeviceNotFoundError(ctx.device, msg("no such device, or access denied"), opts);
    case 5:
      return new DeviceBusyError(ctx.device, msg("device busy"), opts);
    default:
      return new CryptsetupError("internal", ctx.device, msg("unexpected failure"), opts);
  }
}

/**
 * redactKeys replaces every occurrence of each key — as raw bytes (UTF-8 or Latin-1 decoded), hex
 * or base64 — with "[redacted]". Keys shorter than 4 bytes are ignored (they would match noise).
 */
export function redactKeys(text: string, keys: readonly Uint8Array[]): string {
  let out = text;
  for (const key of keys) {
    if (key.length < 4) continue;
    const b = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    const forms = new Set([
      b.toString("utf8"),
      b.toString("latin1"),
      b.toString("hex"),
      b.toString("hex").toUpperCase(),
      b.toString("base64"),
      b.toString("base64").replace(/=+$/, ""),
      b.toString("base64url"),
    ]);
    for (const form of forms) if (form.length >= 4) out = out.split(form).join("[redacted]");
  }
  return out;
}

/** oneLine joins lines, drops cryptsetup's noise lines and caps the length. */
function oneLine(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/^No usable token is available\.$/.test(l) && !/^Command failed with code/.test(l));
  const s = lines.join(" ");
  return s.length > 400 ? `${s.slice(0, 400)}…` : s;
}
