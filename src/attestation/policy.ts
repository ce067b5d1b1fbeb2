import { readFile } from "node:fs/promises";

/**
 * MeasurementPolicy is the admin's `measurements.json` (DESIGN.md). Absent fields mean: measurement
 * and PCRs not checked (reported as skipped), debug refused, VMPL above 0 refused, no minimum TCB,
 * AMD's roots only.
 */
export interface MeasurementPolicy {
  tpm: TPMPolicy;
  snp: SNPPolicy;
}

/** TPMPolicy lists expected SHA-256 PCR values by index (lower-case hex, 64 characters). */
export interface TPMPolicy {
  pcrs: Map<number, string>;
}

/** SNPPolicy constrains SEV-SNP reports. */
export interface SNPPolicy {
  /** measurement is the expected launch measurement (96 hex characters), or undefined: not checked. */
  measurement?: string;
  allowDebug: boolean;
  maxVmpl: number;
  minTcb: { bootloader: number; tee: number; snp: number; microcode: number };
  /** allowTestRoot admits the simulated secure processor's generated root; never set it in production. */
  allowTestRoot: boolean;
}

/** PolicyError says which field of measurements.json is wrong. */
export class PolicyError extends Error {}

/** defaultPolicy is the policy of an absent measurements.json. */
export function defaultPolicy(): MeasurementPolicy {
  return {
    tpm: { pcrs: new Map() },
    snp: { allowDebug: false, maxVmpl: 0, minTcb: { bootloader: 0, tee: 0, snp: 0, microcode: 0 }, allowTestRoot: false },
  };
}

/** parsePolicy validates a parsed measurements.json value and fills defaults. Throws PolicyError naming the field. */
export function parsePolicy(value: unknown): MeasurementPolicy {
  const p = defaultPolicy();
  const root = object(value, "measurements");
  known(root, ["tpm", "snp"], "measurements");
  if (root.tpm !== undefined) {
    const tpm = object(root.tpm, "tpm");
    known(tpm, ["pcrs"], "tpm");
    if (tpm.pcrs !== undefined) {
      for (const [k, v] of Object.entries(object(tpm.pcrs, "tpm.pcrs"))) {
        const idx = Number(k);
        if (!/^\d{1,2}$/.test(k) || idx > 23) throw new PolicyError(`tpm.pcrs: PCR index must be 0-23, got ${JSON.stringify(k)}`);
        p.tpm.pcrs.set(idx, hex(v, 32, `tpm.pcrs.${k}`));
      }
    }
  }
  if (root.snp !== undefined) {
    const snp = object(root.snp, "snp");
    known(snp, ["measurement", "allowDebug", "maxVmpl", "minTcb", "allowTestRoot"], "snp");
    if (snp.measurement !== undefined) p.snp.measurement = hex(snp.measurement, 48, "snp.measurement");
    if (snp.allowDebug !== undefined) p.snp.allowDebug = bool(snp.allowDebug, "snp.allowDebug");
    if (snp.allowTestRoot !== undefined) p.snp.allowTestRoot = bool(snp.allowTestRoot, "snp.allowTestRoot");
    if (snp.maxVmpl !== undefined) p.snp.maxVmpl = int(snp.maxVmpl, 0, 3, "snp.maxVmpl");
    if (snp.minTcb !== undefined) {
      const tcb = object(snp.minTcb, "snp.minTcb");
      known(tcb, ["bootloader", "tee", "snp", "microcode"], "snp.minTcb");
      for (const f of ["bootloader", "tee", "snp", "microcode"] as const) {
        if (tcb[f] !== undefined) p.snp.minTcb[f] = int(tcb[f], 0, 255, `snp.minTcb.${f}`);
      }
    }
  }
  return p;
}

/** loadPolicy reads and parses a measurements.json file; undefined path gives the default policy. */
export async function loadPolicy(path: string | undefined): Promise<MeasurementPolicy> {
  if (path === undefined) return defaultPolicy();
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new PolicyError(`measurements file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PolicyError(`measurements file ${path}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parsePolicy(value);
  } catch (err) {
    throw new PolicyError(`measurements file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** policyToJSON renders a policy in the measurements.json shape. */
export function policyToJSON(p: MeasurementPolicy): unknown {
  return {
    tpm: { pcrs: Object.fromEntries([...p.tpm.pcrs].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v])) },
    snp: { ...p.snp },
  };
}

function object(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new PolicyError(`${field}: must be an object`);
  return v as Record<string, unknown>;
}

function known(o: Record<string, unknown>, keys: string[], field: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new PolicyError(`${field}: unknown field ${JSON.stringify(k)}`);
}

function hex(v: unknown, bytes: number, field: string): string {
  if (typeof v !== "string" || !new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(v)) {
    throw new PolicyError(`${field}: must be ${bytes * 2} hex characters`);
  }
  return v.toLowerCase();
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== "boolean") throw new PolicyError(`${field}: must be true or false`);
  return v;
}

function int(v: unknown, min: number, max: number, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new PolicyError(`${field}: must be an integer ${min}-${max}`);
  return v;
}
