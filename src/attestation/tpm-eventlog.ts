import { createHash } from "node:crypto";
import { Reader, TPMParseError, TPM_ALG, hashAlgorithms } from "./tpm-structures.js";

/**
 * The TCG PC Client Platform Firmware Profile event log, crypto-agile format (the binary_bios_measurements
 * a Linux kernel exposes): a first event in the SHA-1 TCG_PCClientPCREvent layout carrying the
 * "Spec ID Event03" header, then TCG_PCR_EVENT2 records with one digest per bank. Little-endian
 * throughout (unlike the TPM's own structures). Malformed logs throw TPMParseError.
 */

/** EV_NO_ACTION events are informational and never extended into a PCR. */
export const EV_NO_ACTION = 0x00000003;

/** MAX_EVENTS bounds the number of events parsed from one log. */
export const MAX_EVENTS = 100_000;

/** SpecIDEvent is the TCG_EfiSpecIDEvent header: the banks the log records and their digest sizes. */
export interface SpecIDEvent {
  platformClass: number;
  specVersion: { major: number; minor: number; errata: number };
  uintnSize: number;
  /** digestSizes maps each recorded TPM hash algorithm ID to its digest size in bytes. */
  digestSizes: Map<number, number>;
}

/** LogEvent is one TCG_PCR_EVENT2 record. */
export interface LogEvent {
  /** offset is where the record starts in the log, for error messages. */
  offset: number;
  pcrIndex: number;
  eventType: number;
  /** digests maps a TPM hash algorithm ID to the event's digest in that bank. */
  digests: Map<number, Uint8Array>;
  data: Uint8Array;
}

/** EventLog is a parsed crypto-agile event log. */
export interface EventLog {
  specID: SpecIDEvent;
  /** startupLocality is from the StartupLocality EV_NO_ACTION event (it sets PCR 0's initial value), or 0. */
  startupLocality: number;
  events: LogEvent[];
}

const specIDSignature = "Spec ID Event03\0";
const startupLocalitySignature = "StartupLocality\0";

function ascii(b: Uint8Array): string {
  return Buffer.from(b).toString("latin1");
}

function readSpecID(r: Reader): SpecIDEvent {
  const at = r.pos;
  const pcrIndex = r.u32("TCG_PCClientPCREvent.pcrIndex");
  const eventType = r.u32("TCG_PCClientPCREvent.eventType");
  if (pcrIndex !== 0 || eventType !== EV_NO_ACTION) {
    throw new TPMParseError("TCG_PCClientPCREvent", at, "first event is not the EV_NO_ACTION Spec ID event (not a crypto-agile log)");
  }
  r.take(20, "TCG_PCClientPCREvent.digest");
  const size = r.u32("TCG_PCClientPCREvent.eventDataSize");
  const base = r.pos;
  const data = new Reader(r.take(size, "TCG_PCClientPCREvent.event"), true, base);
  const fail = (msg: string): never => {
    throw new TPMParseError("TCG_EfiSpecIDEvent", data.pos, msg);
  };
  if (ascii(data.take(16, "TCG_EfiSpecIDEvent.signature")) !== specIDSignature) fail("signature is not \"Spec ID Event03\"");
  const platformClass = data.u32("TCG_EfiSpecIDEvent.platformClass");
  const minor = data.u8("TCG_EfiSpecIDEvent.specVersionMinor");
  const major = data.u8("TCG_EfiSpecIDEvent.specVersionMajor");
  const errata = data.u8("TCG_EfiSpecIDEvent.specErrata");
  const uintnSize = data.u8("TCG_EfiSpecIDEvent.uintnSize");
  const count = data.u32("TCG_EfiSpecIDEvent.numberOfAlgorithms");
  if (count === 0 || count > 16) fail(`numberOfAlgorithms ${count} not in 1..16`);
  const digestSizes = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const alg = data.u16(`TCG_EfiSpecIdEventAlgorithmSize[${i}].algorithmId`);
    const dsize = data.u16(`TCG_EfiSpecIdEventAlgorithmSize[${i}].digestSize`);
    const known = hashAlgorithms.get(alg);
    if (known && known.size !== dsize) fail(`algorithm 0x${alg.toString(16)} has digest size ${dsize}, want ${known.size}`);
    if (dsize === 0 || dsize > 64 || digestSizes.has(alg)) fail(`bad entry for algorithm 0x${alg.toString(16)}`);
    digestSizes.set(alg, dsize);
  }
  const vendorSize = data.u8("TCG_EfiSpecIDEvent.vendorInfoSize");
  data.take(vendorSize, "TCG_EfiSpecIDEvent.vendorInfo");
  data.end("TCG_EfiSpecIDEvent");
  return { platformClass, specVersion: { major, minor, errata }, uintnSize, digestSizes };
}

function readEvent2(r: Reader, spec: SpecIDEvent, n: number): LogEvent {
  const offset = r.offset;
  const where = `TCG_PCR_EVENT2[${n}]`;
  const pcrIndex = r.u32(`${where}.pcrIndex`);
  const eventType = r.u32(`${where}.eventType`);
  const countAt = r.offset;
  const count = r.u32(`${where}.digests.count`);
  if (count > spec.digestSizes.size) throw new TPMParseError(`${where}.digests.count`, countAt, `${count} digests but the log records ${spec.digestSizes.size} banks`);
  const digests = new Map<number, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const algAt = r.offset;
    const alg = r.u16(`${where}.digests[${i}].hashAlg`);
    const size = spec.digestSizes.get(alg);
    if (size === undefined || digests.has(alg)) throw new TPMParseError(`${where}.digests[${i}].hashAlg`, algAt, `algorithm 0x${alg.toString(16)} not in the Spec ID event or repeated`);
    digests.set(alg, r.take(size, `${where}.digests[${i}].digest`));
  }
  const data = r.take(r.u32(`${where}.eventSize`), `${where}.event`);
  return { offset, pcrIndex, eventType, digests, data };
}

/** parseEventLog parses a crypto-agile TCG event log. Throws TPMParseError naming the event and offset. */
export function parseEventLog(bytes: Uint8Array): EventLog {
  const r = new Reader(bytes, true);
  const specID = readSpecID(r);
  const events: LogEvent[] = [];
  let startupLocality = 0;
  while (r.remaining > 0) {
    if (events.length >= MAX_EVENTS) throw new TPMParseError("TCG_PCR_EVENT2", r.offset, `more than ${MAX_EVENTS} events`);
    const ev = readEvent2(r, specID, events.length);
    if (ev.eventType === EV_NO_ACTION && ev.data.length === 17 && ascii(ev.data.subarray(0, 16)) === startupLocalitySignature) {
      startupLocality = ev.data[16]!;
    }
    events.push(ev);
  }
  return { specID, startupLocality, events };
}

/**
 * replayEventLog extends every event's digest in bank `hashAlg` (SHA-256 by default) into PCRs
 * starting from zero (PCR 0 from the startup locality) and returns the final value of each PCR the
 * log touches. EV_NO_ACTION events are not extended. Throws TPMParseError when an extended event
 * lacks a digest in the bank or names a PCR above 23.
 */
export function replayEventLog(log: EventLog, hashAlg: number = TPM_ALG.SHA256): Map<number, Uint8Array> {
  const hash = hashAlgorithms.get(hashAlg);
  const size = log.specID.digestSizes.get(hashAlg);
  if (!hash || size !== hash.size) throw new TPMParseError("TCG_EfiSpecIDEvent", 0, `log does not record bank 0x${hashAlg.toString(16)}`);
  const pcrs = new Map<number, Uint8Array>();
  for (const [n, ev] of log.events.entries()) {
    if (ev.eventType === EV_NO_ACTION) continue;
    if (ev.pcrIndex > 23) throw new TPMParseError(`TCG_PCR_EVENT2[${n}].pcrIndex`, ev.offset, `PCR ${ev.pcrIndex} out of range`);
    const digest = ev.digests.get(hashAlg);
    if (!digest) throw new TPMParseError(`TCG_PCR_EVENT2[${n}].digests`, ev.offset, `no digest for bank 0x${hashAlg.toString(16)}`);
    let pcr = pcrs.get(ev.pcrIndex);
    if (!pcr) {
      pcr = new Uint8Array(hash.size);
      if (ev.pcrIndex === 0) pcr[hash.size - 1] = log.startupLocality;
    }
    pcrs.set(ev.pcrIndex, new Uint8Array(createHash(hash.name).update(pcr).update(digest).digest()));
  }
  return pcrs;
}

/**
 * compareReplay lists the PCRs in `indices` whose replayed value differs from `quoted` (or is
 * missing on either side), as "PCR n: …" lines; empty means the log explains the quoted values.
 */
export function compareReplay(replayed: ReadonlyMap<number, Uint8Array>, quoted: ReadonlyMap<number, Uint8Array>, indices: Iterable<number>): string[] {
  const out: string[] = [];
  for (const i of indices) {
    const a = replayed.get(i);
    const b = quoted.get(i);
    if (!a || !b) out.push(`PCR ${i}: ${a ? "not quoted" : "no events in log"}`);
    else if (!Buffer.from(a).equals(b)) out.push(`PCR ${i}: log replays to ${Buffer.from(a).toString("hex")}, quote has ${Buffer.from(b).toString("hex")}`);
  }
  return out;
}
