import type { Validator } from "../attestation/attestation.js";
import { ATLSError } from "../atls/errors.js";
import { probeEndpoint } from "../atls/probe.js";
import { errorMessage } from "../core/errors.js";
import { formatEndpoint, parseEndpoint } from "../core/validate.js";
import { VPNAPIClient, vpnapiPort, type PeerStatus } from "../vpnapi/client.js";
import { readAdminFileIfAny } from "./admin-file.js";
import { UsageError, type Command, type IO } from "./command.js";
import { rootOf } from "./verify.js";
import { loadValidators } from "../attestation/validators.js";

/** Attestation is what the admin's own aTLS handshake with a peer showed (status --measurements). */
export interface Attestation {
  /** checked is false without --measurements: nothing was verified (never shown as fine). */
  checked: boolean;
  ok: boolean;
  platform?: string;
  /** root names what vouched for the evidence (Google's EK/AK CA, AMD's ARK, a test root). */
  root?: string;
  /** failed names the failed check and why, when ok is false. */
  failed?: string;
}

/** StatusRow is one peer in `meshctl status`. */
export interface StatusRow {
  role: string;
  vpnIP: string;
  publicEndpoint: string;
  vpnPubKey: string;
  /** appliedVersion is the peer-set version the peer acknowledged (0: none yet). */
  appliedVersion: number;
  /** lag is how many versions the peer is behind the served one (null: it never acknowledged one). */
  lag: number | null;
  lastSeenMs: number;
  appliedMs: number;
  attestation: Attestation;
}

/** MeshStatus is the whole of `meshctl status --json`. */
export interface MeshStatus {
  vpnEndpoint: string;
  resourceVersion: number;
  peers: StatusRow[];
}

/** probeConcurrency bounds the admin's parallel handshakes. */
const probeConcurrency = 8;

/**
 * Attester verifies each peer's pubapi once per (endpoint, WireGuard key) with a fresh aTLS
 * handshake against the admin's policy; `--watch` re-uses a verdict until the peer changes.
 */
class Attester {
  readonly #validators: readonly Validator[] | undefined;
  readonly #cache = new Map<string, Promise<Attestation>>();

  constructor(validators: readonly Validator[] | undefined) {
    this.#validators = validators;
  }

  async attest(rows: readonly { endpoint: string; key: string }[]): Promise<Attestation[]> {
    const out: Attestation[] = new Array<Attestation>(rows.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < rows.length; i = next++) out[i] = await this.#one(rows[i].endpoint, rows[i].key);
    };
    await Promise.all(Array.from({ length: Math.min(probeConcurrency, rows.length) }, worker));
    return out;
  }

  #one(endpoint: string, key: string): Promise<Attestation> {
    if (!this.#validators) return Promise.resolve({ checked: false, ok: false });
    if (endpoint === "") return Promise.resolve({ checked: false, ok: false, failed: "no public endpoint (an admin)" });
    const id = `${endpoint} ${key}`;
    let p = this.#cache.get(id);
    if (!p) {
      const ep = parseEndpoint(endpoint, "endpoint");
      p = probeEndpoint(ep.host, ep.port, this.#validators, { timeoutMs: 10_000 }).then(
        ({ verdict }) => ({ checked: true, ok: verdict.ok, platform: verdict.platform, ...(rootOf(verdict) ? { root: rootOf(verdict)! } : {}) }),
        (err: unknown) => {
          // A failure is not cached: the next round (--watch) asks again.
          this.#cache.delete(id);
          const check = err instanceof ATLSError ? err.check : "error";
          return { checked: true, ok: false, ...(err instanceof ATLSError && err.verdict ? { platform: err.verdict.platform } : {}), failed: `${check}: ${errorMessage(err)}` };
        },
      );
      this.#cache.set(id, p);
    }
    return p;
  }
}

/** collect reads the peer set from the vpnapi and attests every Coordinator and Node. */
async function collect(client: VPNAPIClient, vpnEndpoint: string, attester: Attester): Promise<MeshStatus> {
  const res = await client.getPeers();
  const endpointOf = (s: PeerStatus): string => (s.peer.publicIP === "" ? "" : formatEndpoint({ host: s.peer.publicIP, port: s.peer.pubapiPort }));
  const attestations = await attester.attest(res.peers.map((s) => ({ endpoint: endpointOf(s), key: s.peer.vpnPubKey })));
  return {
    vpnEndpoint,
    resourceVersion: res.resourceVersion,
    peers: res.peers.map((s, i) => ({
      role: s.peer.role,
      vpnIP: s.peer.vpnIP,
      publicEndpoint: endpointOf(s),
      vpnPubKey: s.peer.vpnPubKey,
      appliedVersion: s.appliedVersion,
      lag: s.appliedVersion > 0 ? Math.max(0, res.resourceVersion - s.appliedVersion) : null,
      lastSeenMs: s.lastSeenMs,
      appliedMs: s.appliedMs,
      attestation: attestations[i],
    })),
  };
}

/** lags says whether a Node is behind the served version or never acknowledged one (Coordinators follow the store, admins dial in: neither acknowledges). */
function lags(p: StatusRow): boolean {
  return p.role === "node" && p.lag !== 0;
}

/** attestationCell is the ATTESTATION column: platform and root, or what failed, or "not checked". */
function attestationCell(a: Attestation): string {
  if (!a.checked) return a.failed ? "-" : "not checked (no --measurements)";
  if (!a.ok) return `FAILED ${a.failed ?? ""}`.trim();
  return `${a.platform ?? "?"}: ${a.root ?? "no root named"}`;
}

/** printStatus prints the status table (one line per peer, sorted by VPN IP as served). */
export function printStatus(s: MeshStatus, io: IO, now = Date.now()): void {
  const ago = (ms: number): string => (ms > 0 ? `${Math.max(0, Math.round((now - ms) / 1000))}s ago` : "-");
  const lagging = s.peers.filter(lags).length;
  const failing = s.peers.filter((p) => p.attestation.checked && !p.attestation.ok).length;
  io.out(`mesh at ${s.vpnEndpoint}: resource version ${s.resourceVersion}, ${s.peers.length} peer(s), ${lagging} lagging, ${failing} failing attestation`);
  const rows = s.peers.map((p) => [p.role, p.vpnIP, p.publicEndpoint || "-", p.appliedVersion > 0 ? String(p.appliedVersion) : "-", p.lag === null ? "-" : String(p.lag), ago(p.lastSeenMs), attestationCell(p.attestation)]);
  const head = ["ROLE", "VPN IP", "PUBLIC", "APPLIED", "LAG", "LAST SEEN", "ATTESTATION"];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  for (const r of [head, ...rows]) io.out(r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] + 2))).join(""));
}

/** status is `meshctl status`: the mesh as one table, from inside the VPN. */
export const status: Command = {
  name: "status",
  summary: "show the mesh: peers, roles, versions and lag, last seen, attestation (inside the VPN)",
  usage: `Usage: meshctl status [--vpn-endpoint IP[:PORT]] [--admin-dir DIR] [--measurements FILE] [--json] [--watch [--interval SECONDS]]

Asks a Coordinator's vpnapi (through the VPN) for the peer set and prints one line per peer: role,
VPN IP, public endpoint, the peer-set version it applied and how many versions it lags, when it was
last seen, and its attestation. With --measurements, meshctl verifies every Coordinator and Node
itself (a fresh aTLS handshake each, at most ${probeConcurrency} at a time) and shows the platform and the
root that vouched for it, or the check that failed; without it the column says "not checked".

Options:
  --vpn-endpoint ENDPOINT   the vpnapi to ask (default: the Coordinator VPN IP in admin.json, else 10.118.0.1; port ${vpnapiPort})
  --admin-dir DIR           the directory of admin.json (default .)
  --measurements FILE       verify each peer against this policy
  --json                    print JSON (with --watch: one JSON document per line)
  --watch                   print again every --interval seconds until interrupted (Ctrl-C)
  --interval SECONDS        the --watch period (default 2)

Exit status (without --watch): 0 when every Node applied the current version and (with
--measurements) every peer verified; 1 otherwise.`,
  options: {
    "vpn-endpoint": { type: "string" },
    "admin-dir": { type: "string" },
    measurements: { type: "string" },
    json: { type: "boolean" },
    watch: { type: "boolean" },
    interval: { type: "string" },
  },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const intervalSec = v.interval === undefined ? 2 : Number(v.interval);
    if (!Number.isFinite(intervalSec) || intervalSec < 0.2 || intervalSec > 3600) throw new UsageError(`--interval: must be 0.2 to 3600 seconds, got ${String(v.interval)}`);
    if (v.interval !== undefined && !v.watch) throw new UsageError("--interval needs --watch");
    let target = typeof v["vpn-endpoint"] === "string" ? v["vpn-endpoint"] : undefined;
    if (target === undefined) {
      const admin = await readAdminFileIfAny(typeof v["admin-dir"] === "string" ? v["admin-dir"] : ".");
      target = typeof admin?.fields.coordinatorVPNIP === "string" ? admin.fields.coordinatorVPNIP : "10.118.0.1";
    }
    const vpnEndpoint = formatEndpoint(parseEndpoint(target, "--vpn-endpoint", vpnapiPort));
    const validators = typeof v.measurements === "string" ? await loadValidators(v.measurements) : undefined;
    const attester = new Attester(validators);
    const client = new VPNAPIClient(vpnEndpoint);
    const show = (s: MeshStatus): void => (v.json ? io.out(JSON.stringify(s, null, v.watch ? undefined : 2)) : printStatus(s, io));
    try {
      if (!v.watch) {
        const s = await collect(client, vpnEndpoint, attester);
        show(s);
        const bad = s.peers.some((p) => lags(p) || (p.attestation.checked && !p.attestation.ok));
        return bad ? 1 : 0;
      }
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        while (!stop.signal.aborted) {
          try {
            const s = await collect(client, vpnEndpoint, attester);
            if (!v.json) io.out(`--- ${new Date().toISOString()}`);
            show(s);
          } catch (err) {
            // A Coordinator restarting is what --watch is for: say so and keep watching.
            io.err(`meshctl status: ${errorMessage(err)} (retrying in ${intervalSec}s)`);
          }
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, intervalSec * 1000);
            stop.signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
          });
        }
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
      return 0;
    } finally {
      client.close();
    }
  },
};
