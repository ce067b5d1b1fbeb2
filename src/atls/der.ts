/**
 * Minimal DER (X.690) encoding and decoding: just what an aTLS certificate needs. We build and read
 * certificates ourselves because `@peculiar/x509` needs a Reflect metadata polyfill at runtime that
 * the project does not ship; Node's `crypto.X509Certificate` does the signature and key work but
 * cannot expose arbitrary extensions.
 */

/** DERError says where a DER structure is malformed. */
export class DERError extends Error {}

/** Tag values used by aTLS certificates (universal class unless noted). */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** tlv encodes one element: `tag` (single byte), definite length, `content`. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const len = content.length;
  let header: number[];
  if (len < 0x80) header = [tag, len];
  else {
    const bytes: number[] = [];
    for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = [tag, 0x80 | bytes.length, ...bytes];
  }
  return Buffer.concat([Buffer.from(header), content]);
}

/** sequence encodes SEQUENCE { parts… }. */
export function sequence(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.sequence, Buffer.concat(parts));
}

/** set encodes SET { parts… } (callers pass one element, so DER ordering is trivially kept). */
export function set(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.set, Buffer.concat(parts));
}

/** explicit encodes a context-specific constructed tag [n] EXPLICIT around `inner`. */
export function explicit(n: number, inner: Uint8Array): Buffer {
  return tlv(0xa0 | n, inner);
}

/** unsignedInteger encodes a non-negative INTEGER from big-endian magnitude bytes, minimally. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let bytes = Buffer.from(magnitude.subarray(i));
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(Tag.integer, bytes);
}

/** oid encodes an OBJECT IDENTIFIER from dotted decimal ("1.2.840.10045.4.3.2"). */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map((a) => {
    if (!/^\d+$/.test(a)) throw new DERError(`invalid OID ${JSON.stringify(dotted)}`);
    return BigInt(a);
  });
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || first > 2n) throw new DERError(`invalid OID ${JSON.stringify(dotted)}`);
  const out: number[] = [];
  for (const arc of [first * 40n + second, ...rest]) {
    const groups: number[] = [];
    let v = arc;
    do {
      groups.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < groups.length - 1; i++) groups[i] = (groups[i] ?? 0) | 0x80;
    out.push(...groups);
  }
  return tlv(Tag.oid, Buffer.from(out));
}

/** utf8String encodes a UTF8String. */
export function utf8String(s: string): Buffer {
  return tlv(Tag.utf8String, Buffer.from(s, "utf8"));
}

/** octetString encodes an OCTET STRING. */
export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.octetString, bytes);
}

/** bitString encodes a BIT STRING with no unused bits. */
export function bitString(bytes: Uint8Array): Buffer {
  return tlv(Tag.bitString, Buffer.concat([Buffer.from([0]), bytes]));
}

/** time encodes a Validity time: UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5); seconds precision. */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, "") + "Z";
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(Tag.utcTime, Buffer.from(digits.slice(2), "ascii"));
  return tlv(Tag.generalizedTime, Buffer.from(digits, "ascii"));
}

/** Element is one decoded TLV: `raw` is the whole encoding, `content` its value bytes. */
export interface Element {
  tag: number;
  raw: Buffer;
  content: Buffer;
}

/** readElement decodes the element starting at `offset`; throws DERError if it overruns `buf`. */
export function readElement(buf: Buffer, offset = 0, what = "element"): Element & { end: number } {
  if (offset + 2 > buf.length) throw new DERError(`${what}: truncated header`);
  const tag = buf[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DERError(`${what}: multi-byte tags are not supported`);
  let lenByte = buf[offset + 1] ?? 0;
  let pos = offset + 2;
  let len = lenByte;
  if (lenByte & 0x80) {
    const n = lenByte & 0x7f;
    if (n === 0 || n > 4) throw new DERError(`${what}: unsupported length encoding`);
    if (pos + n > buf.length) throw new DERError(`${what}: truncated length`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[pos + i] ?? 0);
    pos += n;
    lenByte = 0;
  }
  const end = pos + len;
  if (end > buf.length) throw new DERError(`${what}: length ${len} overruns the input`);
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(pos, end), end };
}

/** children decodes the elements inside a constructed element's content. */
export function children(parent: Element, what = "element"): Element[] {
  const out: Element[] = [];
  let offset = 0;
  while (offset < parent.content.length) {
    const el = readElement(parent.content, offset, what);
    out.push({ tag: el.tag, raw: el.raw, content: el.content });
    offset = el.end;
  }
  return out;
}

/** decodeOID renders an OBJECT IDENTIFIER's content as dotted decimal. */
export function decodeOID(content: Uint8Array): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const b of content) {
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs.shift();
  if (first === undefined) throw new DERError("empty OID");
  const top = first < 80n ? first / 40n : 2n;
  return [top, first - top * 40n, ...arcs].join(".");
}

/** decodeTime parses a UTCTime or GeneralizedTime element ("…Z" forms only, as RFC 5280 requires). */
export function decodeTime(el: Element): Date {
  const s = el.content.toString("ascii");
  let m: RegExpMatchArray | null;
  let year: number;
  if (el.tag === Tag.utcTime && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (el.tag === Tag.generalizedTime && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    year = Number(m[1]);
  } else {
    throw new DERError(`invalid time ${JSON.stringify(s)}`);
  }
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}
