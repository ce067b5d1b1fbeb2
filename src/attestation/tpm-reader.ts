/**
 * Bounds-checked reading of TPM 2.0 marshalled structures (big-endian by default): every overrun
 * becomes a TPMParseError naming the structure and offset, never another kind of exception.
 */
/** TPMParseError says which structure was malformed and at which byte offset of the input. */
export class TPMParseError extends Error {
  /** structure is the TPM (or TCG log) structure being read, e.g. "TPMS_ATTEST.extraData". */
  readonly structure: string;
  /** offset is the byte offset in the input buffer where reading failed. */
  readonly offset: number;

  constructor(structure: string, offset: number, message: string, options?: { cause?: unknown }) {
    super(`${structure} at offset ${offset}: ${message}`, options);
    this.name = "TPMParseError";
    this.structure = structure;
    this.offset = offset;
  }
}

/**
 * Reader walks a byte buffer with bounds checks; every read past the end throws TPMParseError.
 * Big-endian unless `littleEndian` (the TCG event log) is set; `base` is added to the offsets
 * errors report, for a buffer cut out of a larger one. Not shared between callers.
 */
export class Reader {
  /** offset is the next byte to read, relative to `bytes`. */
  offset = 0;
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    private readonly littleEndian = false,
    private readonly base = 0,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** remaining is the number of unread bytes. */
  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  /** pos is the offset of the next byte in the outermost input, for error messages. */
  get pos(): number {
    return this.base + this.offset;
  }

  private need(n: number, structure: string): number {
    if (n > this.remaining) {
      throw new TPMParseError(structure, this.pos, `needs ${n} bytes, ${this.remaining} left`);
    }
    const at = this.offset;
    this.offset += n;
    return at;
  }

  /** u8 reads one byte. */
  u8(structure: string): number {
    return this.view.getUint8(this.need(1, structure));
  }

  /** u16 reads a 16-bit unsigned integer. */
  u16(structure: string): number {
    return this.view.getUint16(this.need(2, structure), this.littleEndian);
  }

  /** u32 reads a 32-bit unsigned integer. */
  u32(structure: string): number {
    return this.view.getUint32(this.need(4, structure), this.littleEndian);
  }

  /** u64 reads a 64-bit unsigned integer. */
  u64(structure: string): bigint {
    return this.view.getBigUint64(this.need(8, structure), this.littleEndian);
  }

  /** take returns a copy of the next n bytes. */
  take(n: number, structure: string): Uint8Array {
    const at = this.need(n, structure);
    return this.bytes.slice(at, at + n);
  }

  /** tpm2b reads a TPM2B_*: a 16-bit size then that many bytes; `max` bounds the size. */
  tpm2b(structure: string, max = 0xffff): Uint8Array {
    const at = this.pos;
    const size = this.u16(structure);
    if (size > max) throw new TPMParseError(structure, at, `size ${size} exceeds ${max}`);
    return this.take(size, structure);
  }

  /** end throws unless every byte was consumed: trailing garbage is malformed input. */
  end(structure: string): void {
    if (this.remaining !== 0) throw new TPMParseError(structure, this.pos, `${this.remaining} trailing bytes`);
  }
}

