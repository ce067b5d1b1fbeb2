/**
 * The native addon's API exactly as the C++ exports it (native/src/*.cc). Only src/attestation/native.ts
 * uses these raw types; everything else goes through its typed wrappers. (A types module rather than a
 * `native.d.ts` beside `native.ts`, which NodeNext would resolve ambiguously.)
 *
 * Every function returns a Promise that runs on the libuv thread pool. Argument errors are thrown
 * synchronously as TypeError; operation failures reject with a {@link NativeCallError}.
 */

/** NativeCallError is the Error a native operation rejects with. */
export interface NativeCallError extends Error {
  /** call names the failing TSS function or system call ("Esys_Quote", "open /dev/sev-guest", …). */
  call: string;
  /** rc is the TSS2_RC of a failed TSS call. */
  rc?: number;
  /** errno of a failed system call, with its symbolic `code` ("ENOENT") when known. */
  errno?: number;
  code?: string;
  /** fwError and vmmError: the sev-guest ioctl's exitinfo2 halves. */
  fwError?: number;
  vmmError?: number;
  /** status is the SEV firmware's MSG_REPORT_RSP status when it is not 0. */
  status?: number;
  /** certsLength is the certificate buffer length the host asks for (SNP_GET_EXT_REPORT, vmmError 1). */
  certsLength?: number;
}

/** RawTpm is one ESYS context over one TCTI; operations on it are serialized by a mutex in C++. */
export interface RawTpm {
  /** createAK creates the restricted-signing primary key; `public` is the TPM2B_PUBLIC as marshaled by the TPM. */
  createAK(type: "ecc" | "rsa", hierarchy: "endorsement" | "owner"): Promise<{ public: Buffer; handle: number }>;
  /** createPrimary creates a primary key from a marshalled TPMT_PUBLIC template (no size prefix). */
  createPrimary(hierarchy: "endorsement" | "owner", template: Uint8Array): Promise<{ public: Buffer; handle: number }>;
  /** nvList lists the defined NV indices. */
  nvList(): Promise<number[]>;
  /** nvRead reads a whole NV index with owner authorization (empty password), chunked by TPM2_PT_NV_BUFFER_MAX. */
  nvRead(index: number): Promise<Buffer>;
  /** nvDefineWrite defines an NV index of data.length (1-2048) bytes, owner hierarchy, empty auth, and writes data. */
  nvDefineWrite(index: number, data: Uint8Array): Promise<void>;
  /** quote signs the SHA-256 bank's `pcrs` with extraData (≤ 66 bytes); quote is TPMS_ATTEST, signature TPMT_SIGNATURE. */
  quote(akHandle: number, pcrs: number[], extraData: Uint8Array): Promise<{ quote: Buffer; signature: Buffer }>;
  /** pcrRead reads SHA-256 PCR values, all from one PCR update counter value. */
  pcrRead(indices: number[]): Promise<{ updateCounter: number; values: Record<string, Buffer> }>;
  /** pcrExtend extends the SHA-256 bank of PCR `index` with a 32-byte digest (TPM2_PCR_Extend). */
  pcrExtend(index: number, digest: Uint8Array): Promise<void>;
  /** pcrEvent extends every bank of PCR `index` with the bank's hash of `data` (TPM2_PCR_Event, 1-1024 bytes). */
  pcrEvent(index: number, data: Uint8Array): Promise<void>;
  /** flush unloads a transient object (TPM2_FlushContext). */
  flush(handle: number): Promise<void>;
  /** flushTransients flushes every transient object the TPM lists and resolves with their number. */
  flushTransients(): Promise<number>;
  /** close finalizes the contexts once in-flight operations finish; later operations reject. Idempotent. */
  close(): Promise<void>;
}

/** NativeAddon is the module object of attested_mesh_native.node. */
export interface NativeAddon {
  /** openTpm initializes a TCTI from its config string ("device:/dev/tpmrm0", "swtpm:host=H,port=P") and ESAPI on it. */
  openTpm(tcti: string): Promise<RawTpm>;
  /** snpGetReport issues SNP_GET_REPORT on `device`; resolves with the ATTESTATION_REPORT bytes. */
  snpGetReport(reportData: Uint8Array, vmpl: number, device: string): Promise<Buffer>;
  /** snpGetExtReport issues SNP_GET_EXT_REPORT with a `certsLength`-byte (multiple of 4096) certificate buffer. */
  snpGetExtReport(
    reportData: Uint8Array,
    vmpl: number,
    device: string,
    certsLength: number,
  ): Promise<{ report: Buffer; certs: Buffer }>;
  /**
   * tpmSealPcrs seals 1-128 bytes of `data` in a keyedhash object under the owner hierarchy's ECC
   * storage primary key, with authPolicy = PolicyPCR over the current SHA-256 values of `pcrs`.
   */
  tpmSealPcrs(tpm: RawTpm, pcrs: number[], data: Uint8Array): Promise<RawSealedBlob>;
  /** tpmUnsealPcrs loads a sealed object and unseals it in a PolicyPCR session over `pcrs`. */
  tpmUnsealPcrs(tpm: RawTpm, pub: Uint8Array, priv: Uint8Array, pcrs: number[]): Promise<Buffer>;
}

/** RawSealedBlob is a sealed object as the TPM marshals it: TPM2B_PUBLIC and TPM2B_PRIVATE. */
export interface RawSealedBlob {
  public: Buffer;
  private: Buffer;
}
