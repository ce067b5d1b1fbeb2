import { readFile } from "node:fs/promises";

/**
 * MeasurementPolicy is the admin's `measurements.json` (DESIGN.md "Measurement policy"). Only the
 * platforms it names are accepted: an absent section means documents of that platform are refused.
 * A named platform must pin something (tpm: PCRs; snp: the launch measurement); there is no
 * "not pinned means fine". Other defaults: debug refused, VMPL above 0 refused, no minimum TCB,
 * only the real roots (AMD's ARKs, Google's EK/AK CA) unless a section says allowTestRoot.
 */
export interface MeasurementPolicy {
  tpm?: TPMPolicy;
  snp?: SNPPolicy;
}

/** TPMPolicy lists expected SHA-256 PCR values by index (lower-case hex, 64 characters). */
export interface TPMPolicy {
  /** pcrs must not be empty and must not hold the activation markers (markerPCRs). */
  pcrs: Map<number, string>;
  /**
   * allowTestRoot admits AK certificates from the project's published test CA (a simulated TPM,
   * src/attestation/tpm-test-ca.ts, whose private key is public); never set it for real hardware.
   */
  allowTestRoot: boolean;
}

/** SNPPolicy constrains SEV-SNP reports (snp documents, and the SNP report of an Azure HCL report). */
export interface SNPPolicy {
  /** measurement is the expected launch measurement (96 hex characters); a policy must set it. */
  measurement?: string;
  allowDebug: boolean;
  maxVmpl: number;
  minTcb: { bootloader: number; tee: number; snp: number; microcode: number };
  /** allowTestRoot admits the simulated secure processor's generated root; never set it in production. */
  allowTestRoot: boolean;
}

/** markerPCRs are the activation markers (PCR 11 owner ID, PCR 12 cluster ID): never pinned by a policy. */
export const markerPCRs: readonly number[] = [11, 12];

/** markerExplanation says why a policy may not pin PCR 11 or 12. */
export const markerExplanation =
  "PCR 11 and 12 are the activation markers (owner and cluster ID): a fresh peer shows them as zeros and an activated one does not, so a policy must not pin them";

/** PolicyError says which field of measurements.json is wrong. */
export class PolicyError extends Error {}

/** defaultTPMPolicy is a tpm section with nothing pinned yet (not a usable policy until PCRs are added). */
export function defaultTPMPolicy(): TPMPolicy {
  return { pcrs: new Map(), allowTestRoot: false };
}

/** defaultSNPPolicy is an snp section with the defaults and no measurement yet (not usable until one is set). */
export function defaultSNPPolicy(): SNPPolicy {
  return { allowDebug: false, maxVmpl: 0, minTcb: { bootloader: 0, tee: 0, snp: 0, microcode: 0 }, allowTestRoot: false };
}

/**
 * defaultPolicy names both platforms and pins nothing: validators made from it refuse every
 * document ("policy pcrs" / "measurement" fail) until pins are added. For code that builds a policy.
 */
export function defaultPolicy(): { tpm: TPMPolicy; snp: SNPPolicy } {
  return { tpm: defaultTPMPolicy(), snp: defaultSNPPolicy() };
}

/**
 * policyProblems lists why `p` cannot be used: no platform named, a named platform pinning nothing,
 * a pinned activation marker. Empty when the policy is usable. Validators report these as failures.
 */
export function policyProblems(p: MeasurementPolicy): string[] {
  const out: string[] = [];
  if (p.tpm === undefined && p.snp === undefined) out.push("the policy names no platform (want a tpm or snp section)");
  if (p.tpm !== undefined) {
    if (p.tpm.pcrs.size === 0) out.push("tpm.pcrs: the tpm section pins no PCR");
    const pinned = markerPCRs.filter((i) => p.tpm!.pcrs.has(i));
    if (pinned.length > 0) out.push(`tpm.pcrs: pins PCR ${pinned.join(" and ")}: ${markerExplanation}`);
  }
  if (p.snp !== undefined && p.snp.measurement === undefined) out.push("snp.measurement: the snp section pins no measurement");
  return out;
}

/** checkPolicy throws PolicyError naming every problem of policyProblems(p). */
export function checkPolicy(p: MeasurementPolicy): MeasurementPolicy {
  const problems = policyProblems(p);
  if (problems.length > 0) throw new PolicyError(problems.join("; "));
  return p;
}

/**
 * parsePolicy validates a parsed measurements.json value, fills defaults and applies the rules of
 * policyProblems. Throws PolicyError naming the field.
 */
export function parsePolicy(value: unknown): MeasurementPolicy {
  const p: MeasurementPolicy = {};
  const root = object(value, "measurements");
  known(root, ["tpm", "snp"], "measurements");
  if (root.tpm !== undefined) {
    const tpm = object(root.tpm, "tpm");
    known(tpm, ["pcrs", "allowTestRoot"], "tpm");
    p.tpm = defaultTPMPolicy();
    if (tpm.pcrs !== undefined) {
      for (const [k, v] of Object.entries(object(tpm.pcrs, "tpm.pcrs"))) {
        const idx = Number(k);
        if (!/^(?:0|[1-9][0-9]?)$/.test(k) || idx > 23) throw new PolicyError(`tpm.pcrs: PCR index must be 0-23, got ${JSON.stringify(k)}`);
        p.tpm.pcrs.set(idx, hex(v, 32, `tpm.pcrs.${k}`));
      }
    }
    if (tpm.allowTestRoot !== undefined) p.tpm.allowTestRoot = bool(tpm.allowTestRoot, "tpm.allowTestRoot");
  }
  if (root.snp !== undefined) {
    const snp = object(root.snp, "snp");
    known(snp, ["measurement", "allowDebug", "maxVmpl", "minTcb", "allowTestRoot"], "snp");
    p.snp = defaultSNPPolicy();
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
  return checkPolicy(p);
}

/** howToGetPolicy tells a user without a policy how to get one. */
export const howToGetPolicy =
  "get one with `meshctl measurements --from ENDPOINT --out measurements.json` (trust on first use: it prints what a peer's verified evidence shows) and pass it with --measurements";

/**
 * loadPolicy reads and parses a measurements.json file. There is no default policy: an undefined
 * path is a PolicyError that says how to get one.
 */
export async function loadPolicy(path: string | undefined): Promise<MeasurementPolicy> {
  if (path === undefined) throw new PolicyError(`no measurement policy: ${howToGetPolicy}`);
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

/** policyToJSON renders a policy in the measurements.json shape (only the sections it names). */
export function policyToJSON(p: MeasurementPolicy): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (p.tpm) {
    out.tpm = {
      pcrs: Object.fromEntries([...p.tpm.pcrs].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v])),
      ...(p.tpm.allowTestRoot ? { allowTestRoot: true } : {}),
    };
  }
  if (p.snp) out.snp = { ...p.snp, minTcb: { ...p.snp.minTcb } };
  return out;
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
