/**
 * native.ts is the one loader of the native addon (native/, built by `npm run build:native`) and its
 * typed Promise API: {@link Tpm} for TPM 2.0 through tpm2-tss, {@link snpGetReport} and
 * {@link snpGetExtendedReport} for SEV-SNP. The addon is loaded lazily, on first use, so importing this
 * module never fails on a machine without the build.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import type { NativeAddon, NativeCallError, RawTpm } from "./native-types.js";

/** addonFile is the file name node-gyp gives the built addon. */
export const addonFile = "attested_mesh_native.node";

/** NativeLoadError says the addon could not be loaded; `tried` lists every path with its reason. */
export class NativeLoadError extends Error {
  constructor(readonly tried: { path: string; reason: string }[]) {
    super(
      `native addon ${addonFile} could not be loaded (build it with \`npm run build:native\`); tried:\n` +
        tried.map((t) => `  ${t.path}: ${t.reason}`).join("\n"),
    );
    this.name = "NativeLoadError";
  }
}

/**
 * addonCandidates lists where the built addon may be, in order: native/build/{Release,Debug} under the
 * package root, whether this module runs from src/attestation (tsx, vitest) or dist/src/attestation.
 * An explicit path, when given, is tried first.
 */
export function addonCandidates(explicitPath?: string): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const roots = [resolve(here, "../.."), resolve(here, "../../..")];
  const paths = roots.flatMap((r) => ["Release", "Debug"].map((c) => resolve(r, "native/build", c, addonFile)));
  return [...new Set(explicitPath ? [resolve(explicitPath), ...paths] : paths)];
}

/**
 * loadNativeFrom loads the addon from the first of `paths` that loads, without caching. Throws
 * NativeLoadError naming every path with the reason it failed (missing, wrong ABI, missing libtss2…).
 */
export function loadNativeFrom(paths: readonly string[]): NativeAddon {
  const require = createRequire(import.meta.url);
  const tried: { path: string; reason: string }[] = [];
  for (const path of paths) {
    if (!existsSync(path)) {
      tried.push({ path, reason: "not found" });
      continue;
    }
    try {
      return require(path) as NativeAddon;
    } catch (err) {
      tried.push({ path, reason: err instanceof Error ? err.message.split("\n")[0] : String(err) });
    }
  }
  throw new NativeLoadError(tried);
}

let loaded: NativeAddon | undefined;

/**
 * loadNative returns the addon, loading it from addonCandidates(explicitPath) on the first call and
 * caching it (later calls ignore explicitPath). Throws NativeLoadError naming every path it tried.
 */
export function loadNative(explicitPath?: string): NativeAddon {
  loaded ??= loadNativeFrom(addonCandidates(explicitPath));
  return loaded;
}

/** TPM response codes after which the same command may succeed: RETRY, YIELDED, TESTING, NV_RATE. */
const retryableTPMCodes = new Set([0x922, 0x908, 0x90a, 0x920]);
/** TSS2_RC layers that carry TPM response codes: the TPM itself and a resource manager passing them on. */
const tpmLayers = new Set([0, 11]);
const tctiIOError = (10 << 16) | 10;
/** vmmErrBusy is the VMM's "busy, try again" answer to a guest request (SNP_GUEST_VMM_ERR_BUSY). */
const vmmErrBusy = 2;

function isRetryable(raw: NativeCallError): boolean {
  if (raw.vmmError === vmmErrBusy || raw.code === "EAGAIN" || raw.code === "EBUSY") return true;
  if (raw.rc === undefined) return false;
  return raw.rc === tctiIOError || (tpmLayers.has(raw.rc >>> 16) && retryableTPMCodes.has(raw.rc & 0xffff));
}

/**
 * NativeError is a failed native operation: `call` names the TSS function or system call, `rc` or
 * `errno` its return code (the message has both in readable form). `retryable` says whether repeating
 * the operation can help (the TPM or the VMM asked for a retry, or the TCTI connection failed).
 */
export class NativeError extends Error {
  readonly call: string;
  readonly rc?: number;
  readonly errno?: number;
  readonly code?: string;
  readonly fwError?: number;
  readonly vmmError?: number;
  readonly status?: number;
  readonly certsLength?: number;
  readonly retryable: boolean;

  constructor(message: string, raw: NativeCallError) {
    super(message, { cause: raw });
    this.name = "NativeError";
    this.call = raw.call;
    for (const k of ["rc", "errno", "code", "fwError", "vmmError", "status", "certsLength"] as const) {
      if (raw[k] !== undefined) Object.assign(this, { [k]: raw[k] });
    }
    this.retryable = isRetryable(raw);
  }
}

function isNativeCallError(err: unknown): err is NativeCallError {
  return err instanceof Error && typeof (err as Partial<NativeCallError>).call === "string";
}

/** native runs one addon call, turning its rejection into a NativeError prefixed with `context`. */
async function native<T>(context: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (isNativeCallError(err)) throw new NativeError(`${context}: ${err.message}`, err);
    throw err;
  }
}

/** AKOptions choose the attestation key; the defaults are ECC P-256 under the endorsement hierarchy. */
export interface AKOptions {
  type?: "ecc" | "rsa";
  hierarchy?: "endorsement" | "owner";
}

/** AK is a loaded attestation key: its TPM2B_PUBLIC as the TPM marshals it, and its ESYS handle. */
export interface AK {
  public: Buffer;
  handle: number;
}

/** TPMQuote is a quote: `quote` the TPMS_ATTEST bytes, `signature` the TPMT_SIGNATURE bytes. */
export interface TPMQuote {
  quote: Buffer;
  signature: Buffer;
}

/**
 * Tpm is one open TPM connection. Operations are queued and run one at a time on the thread pool, so
 * it is safe to call concurrently and never blocks the event loop. Call close() when done; the
 * transient objects it created (AKs) are flushed by the TPM resource manager or with flush().
 * PCR operations use the SHA-256 bank.
 */
export class Tpm {
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly raw: RawTpm,
    /** tcti is the TCTI config string this Tpm was opened with. */
    readonly tcti: string,
  ) {}

  /** open connects to the TPM at `tcti` ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=N"). */
  static async open(tcti: string): Promise<Tpm> {
    const raw = await native(`open TPM ${JSON.stringify(tcti)}`, () => loadNative().openTpm(tcti));
    return new Tpm(raw, tcti);
  }

  private run<T>(op: string, f: () => Promise<T>): Promise<T> {
    const next = this.tail.then(() => native(`tpm ${op}`, f));
    this.tail = next.catch(() => undefined);
    return next;
  }

  /**
   * withRaw runs `f` with this connection's raw object and the addon, queued like every other
   * operation and with failures turned into NativeError ("tpm <op>: …"). It serves the addon's
   * module functions that take a Tpm, wrapped in sibling modules (tpm-seal.ts).
   */
  withRaw<T>(op: string, f: (raw: RawTpm, addon: NativeAddon) => Promise<T>): Promise<T> {
    return this.run(op, () => f(this.raw, loadNative()));
  }

  /** createAK creates (or, for the same template, re-creates) the primary attestation key. */
  createAK(options: AKOptions = {}): Promise<AK> {
    return this.run("createAK", () =>
      this.raw.createAK(options.type ?? "ecc", options.hierarchy ?? "endorsement"),
    );
  }

  /**
   * createPrimary creates (or, for the same template, re-creates) a primary key in `hierarchy` from a
   * marshalled TPMT_PUBLIC, such as the AK template a GCE vTPM publishes in NV. A template that does
   * not unmarshal is a TypeError.
   */
  createPrimary(hierarchy: "endorsement" | "owner", template: Uint8Array): Promise<AK> {
    return this.run("createPrimary", () => this.raw.createPrimary(hierarchy, template));
  }

  /** nvList lists the NV indices defined on the TPM. */
  async nvList(): Promise<number[]> {
    return this.run("nvList", () => this.raw.nvList());
  }

  /** nvRead reads the whole NV index `index` (owner authorization, empty password). */
  nvRead(index: number): Promise<Buffer> {
    return this.run(`nvRead 0x${index.toString(16).padStart(8, "0")}`, () => this.raw.nvRead(index));
  }

  /**
   * nvDefineWrite defines the NV index `index` with exactly data.length (1-2048) bytes in the owner
   * hierarchy (empty authorization; owner/auth write, owner/auth/platform read, no DA) and writes
   * `data`. Rejects if the index exists.
   */
  nvDefineWrite(index: number, data: Uint8Array): Promise<void> {
    return this.run(`nvDefineWrite 0x${index.toString(16).padStart(8, "0")}`, () => this.raw.nvDefineWrite(index, data));
  }

  /** quote signs the SHA-256 values of `pcrs` and `extraData` (at most 66 bytes) with the AK. */
  quote(akHandle: number, pcrs: readonly number[], extraData: Uint8Array): Promise<TPMQuote> {
    return this.run("quote", () => this.raw.quote(akHandle, [...pcrs], extraData));
  }

  /** pcrRead returns the SHA-256 values of `indices` (0-23), all read at one PCR update counter. */
  async pcrRead(indices: readonly number[]): Promise<Map<number, Buffer>> {
    const r = await this.run("pcrRead", () => this.raw.pcrRead([...indices]));
    return new Map(Object.entries(r.values).map(([k, v]) => [Number(k), v]));
  }

  /** pcrExtend extends the SHA-256 bank of PCR `index` with a 32-byte digest. */
  pcrExtend(index: number, digest: Uint8Array): Promise<void> {
    return this.run("pcrExtend", () => this.raw.pcrExtend(index, digest));
  }

  /** pcrEvent extends every bank of PCR `index` with that bank's hash of `data` (1-1024 bytes). */
  pcrEvent(index: number, data: Uint8Array): Promise<void> {
    return this.run("pcrEvent", () => this.raw.pcrEvent(index, data));
  }

  /** flush unloads a transient object such as an AK. */
  flush(handle: number): Promise<void> {
    return this.run("flush", () => this.raw.flush(handle));
  }

  /**
   * flushTransients flushes every transient object the TPM lists and returns how many. Behind a
   * resource manager (/dev/tpmrm0) that is only this connection's; on swtpm or /dev/tpm0 it is every
   * client's, including objects a crashed process left behind.
   */
  flushTransients(): Promise<number> {
    return this.run("flushTransients", () => this.raw.flushTransients());
  }

  /** close releases the connection after queued operations; later operations reject. Idempotent. */
  close(): Promise<void> {
    return this.run("close", () => this.raw.close());
  }
}

/** defaultSNPDevice is the sev-guest driver's device node. */
export const defaultSNPDevice = "/dev/sev-guest";

/** SNPRequestOptions: the device node (default /dev/sev-guest) and the VMPL to report (default 0). */
export interface SNPRequestOptions {
  device?: string;
  vmpl?: number;
}

/** snpGetReport requests an ATTESTATION_REPORT carrying the 64-byte `reportData`. */
export function snpGetReport(reportData: Uint8Array, options: SNPRequestOptions = {}): Promise<Buffer> {
  const device = options.device ?? defaultSNPDevice;
  return native("SEV-SNP report", () => loadNative().snpGetReport(reportData, options.vmpl ?? 0, device));
}

/** vmmErrInvalidLen is the VMM's "certificate buffer too small" answer (SNP_GUEST_VMM_ERR_INVALID_LEN). */
const vmmErrInvalidLen = 1;

/**
 * snpGetExtendedReport requests a report plus the host's certificate table (GHCB spec: GUID, offset,
 * length entries ending in a zero entry; all zeros if the host has none). A too-small buffer is
 * retried once with the length the host asks for.
 */
export async function snpGetExtendedReport(
  reportData: Uint8Array,
  options: SNPRequestOptions & { certsLength?: number } = {},
): Promise<{ report: Buffer; certs: Buffer }> {
  const device = options.device ?? defaultSNPDevice;
  const vmpl = options.vmpl ?? 0;
  const call = (len: number) =>
    native("SEV-SNP extended report", () => loadNative().snpGetExtReport(reportData, vmpl, device, len));
  try {
    return await call(options.certsLength ?? 4 * 4096);
  } catch (err) {
    if (err instanceof NativeError && err.vmmError === vmmErrInvalidLen && err.certsLength) {
      return call(Math.ceil(err.certsLength / 4096) * 4096);
    }
    throw err;
  }
}
