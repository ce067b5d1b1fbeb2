import { canonicalIP, checkPort, formatEndpoint, hostPrefix } from "./addr.js";
import { checkUnique, diffNormalized, diffPeers, diffSummary, isEmptyDiff, normalizePeerSet, type PeerConfig, type PeerDiff } from "./diff.js";
import { invalidArgument, WireGuardError } from "./errors.js";
import { classifyCommandError, execaRunner, inNetns, type CommandOptions, type CommandResult } from "./exec.js";
import { loadOrCreatePrivateKey } from "./key-file.js";
import { checkKey, encodeKey, publicKeyBytes } from "./keys.js";
import type { DevicePeer, DeviceState } from "./uapi.js";
import type { WireGuardLogger, WireGuardOptions, WireGuardPeerSpec } from "./vpn.js";
import { nullLogger } from "../shared/logger.js";

/** defaultListenPort is WireGuard's port in the mesh. */
export const defaultListenPort = 51820;
/** defaultPersistentKeepaliveSec keeps NAT mappings to peers open. */
export const defaultPersistentKeepaliveSec = 25;

/** ResolvedWireGuardOptions are WireGuardOptions after checks, with every default filled in. */
export type ResolvedWireGuardOptions = Required<Omit<WireGuardOptions, "netns">> & { netns: string | undefined };

/** resolveOptions checks WireGuardOptions and fills defaults; it throws WireGuardError naming the field. */
export function resolveOptions(o: WireGuardOptions): ResolvedWireGuardOptions {
  if (typeof o.interfaceName !== "string" || !/^[A-Za-z0-9_=+.-]{1,15}$/.test(o.interfaceName)) {
    throw invalidArgument("interfaceName", `must be 1-15 characters of letters, digits and _=+.-, got ${JSON.stringify(o.interfaceName)}`);
  }
  if (typeof o.privateKeyFile !== "string" || o.privateKeyFile === "") throw invalidArgument("privateKeyFile", "is required");
  if (o.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(o.netns)) throw invalidArgument("netns", `not a namespace name: ${JSON.stringify(o.netns)}`);
  const prefix = o.vpnPrefixLength ?? 16;
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 32) throw invalidArgument("vpnPrefixLength", `must be 1-32, got ${prefix}`);
  return {
    interfaceName: o.interfaceName,
    privateKeyFile: o.privateKeyFile,
    listenPort: checkPort(o.listenPort ?? defaultListenPort, "listenPort", true),
    persistentKeepaliveSec: checkPort(o.persistentKeepaliveSec ?? defaultPersistentKeepaliveSec, "persistentKeepaliveSec", true),
    vpnPrefixLength: prefix,
    netns: o.netns,
    logger: o.logger ?? nullLogger,
    commandTimeoutMs: o.commandTimeoutMs ?? 10_000,
    runner: o.runner ?? execaRunner,
  };
}

/**
 * peerConfigFromSpec turns the core's view of a peer into the device's: its VPN IP as the only
 * allowed IP (host prefix), endpoint publicIP:port (port default 51820; no endpoint when publicIP
 * is empty, as for admins, who dial in), and the keepalive. Throws naming `field` when malformed.
 */
export function peerConfigFromSpec(p: WireGuardPeerSpec, persistentKeepaliveSec: number, field: string): PeerConfig {
  if (typeof p !== "object" || p === null) throw invalidArgument(field, "must be a peer object");
  const out: PeerConfig = { pubKey: checkKey(p.pubKey, `${field}.pubKey`), allowedIPs: [hostPrefix(p.vpnIP, `${field}.vpnIP`)], persistentKeepaliveSec };
  if (p.publicIP !== undefined && p.publicIP !== "") out.endpoint = formatEndpoint(p.publicIP, p.port ?? defaultListenPort, `${field}.endpoint`);
  return out;
}

/** toPeerConfig drops a device peer's counters, leaving what diffPeers compares. */
export function toPeerConfig(p: DevicePeer): PeerConfig {
  const out: PeerConfig = { pubKey: p.pubKey, allowedIPs: p.allowedIPs, persistentKeepaliveSec: p.persistentKeepaliveSec };
  if (p.endpoint !== undefined) out.endpoint = p.endpoint;
  return out;
}

/**
 * WireGuardVPN is the shared base of the device backends; it structurally satisfies the core's VPN
 * interface. It owns the private key (loaded from, or generated into, options.privateKeyFile) and
 * the device it creates in start(). Every device write (start, setInterfaceIP, updatePeers, close)
 * is serialized, so all methods are safe to call concurrently. updatePeers validates the wanted set,
 * diffs it against the set it last wrote (reading the device only the first time and after a failed
 * write; repairPeers always reads), writes nothing when they agree and otherwise applies the
 * difference in one batched operation; when that fails it restores and verifies the previous peers
 * before throwing. close() is required to remove the device and is idempotent.
 */
export abstract class WireGuardVPN {
  /** options are the checked options with defaults filled in. */
  protected readonly options: ResolvedWireGuardOptions;
  protected readonly log: WireGuardLogger;
  private state: "new" | "running" | "closed" = "new";
  /** written is the peer set last written (or verified); undefined: unknown, read the device first. */
  private written: PeerConfig[] | undefined;
  /** specCache maps a spec's fields to its validated configuration (the last set's peers). */
  private specCache = new Map<string, PeerConfig>();
  private publicKey: string | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: WireGuardOptions) {
    this.options = resolveOptions(options);
    this.log = this.options.logger;
  }

  /** interfaceName is the device's name. */
  get interfaceName(): string {
    return this.options.interfaceName;
  }

  /** start loads or generates the private key, creates the device and sets key and listen port. Call once. */
  start(): Promise<void> {
    return this.exclusive(async () => {
      if (this.state !== "new") throw new WireGuardError("closed", `start ${this.interfaceName}: already ${this.state === "running" ? "started" : "closed"}`);
      const key = await loadOrCreatePrivateKey(this.options.privateKeyFile);
      if (key.created) this.log.info("generated a WireGuard private key", { file: this.options.privateKeyFile });
      if (key.tightened) this.log.warn("private key file was readable by others; set its mode to 0600", { file: this.options.privateKeyFile });
      const publicKey = encodeKey(publicKeyBytes(key.privateKey));
      try {
        await this.createDevice(key.privateKey);
        const reported = (await this.readDevice()).publicKey;
        if (reported !== publicKey) {
          throw new WireGuardError("internal", `start ${this.interfaceName}: the device reports public key ${reported ?? "(none)"} after setting ours (${publicKey})`);
        }
      } catch (err) {
        await this.destroyDevice().catch(() => undefined);
        throw err;
      } finally {
        key.privateKey.fill(0);
      }
      this.publicKey = publicKey;
      this.state = "running";
      this.log.info("WireGuard device up", { interface: this.interfaceName, publicKey: this.publicKey, listenPort: this.options.listenPort });
    });
  }

  /** getPublicKey returns the device's public key, base64. Requires start(). */
  async getPublicKey(): Promise<string> {
    this.requireRunning("get public key");
    return this.publicKey!;
  }

  /** setInterfaceIP assigns vpnIP/vpnPrefixLength (replacing other addresses of its family) and brings the link up. */
  setInterfaceIP(vpnIP: string): Promise<void> {
    return this.exclusive(async () => {
      this.requireRunning("set interface IP");
      const ip = canonicalIP(vpnIP, "vpnIP");
      const dev = this.interfaceName;
      const family = ip.includes(":") ? "inet6" : "inet";
      const shown = JSON.parse((await this.run("set interface IP", "ip", ["-j", "address", "show", "dev", dev])).stdout || "[]") as Array<{ addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>;
      const stale = (shown[0]?.addr_info ?? []).filter((a) => a.family === family && a.local !== ip);
      // Stale addresses go first: deleting a primary address also deletes its secondaries.
      const batch = [
        ...stale.map((a) => `address del ${a.local}/${a.prefixlen} dev ${dev}`),
        `address replace ${ip}/${this.options.vpnPrefixLength} dev ${dev}`,
        `link set ${dev} up`,
      ];
      await this.run("set interface IP", "ip", ["-batch", "-"], { input: `${batch.join("\n")}\n` });
    });
  }

  /**
   * updatePeers converges the device's peers to exactly `peers` (see the class contract) without
   * reading the device: it diffs against the set it last wrote. An endpoint is written only for a
   * new peer or when `peers` changes it, so endpoints WireGuard learned by roaming are kept.
   */
  async updatePeers(peers: readonly WireGuardPeerSpec[]): Promise<void> {
    await this.applyCanonical(this.wantedConfigs(peers), false);
  }

  /**
   * repairPeers is updatePeers after re-reading the device: it restores peers a reset removed or
   * altered. A peer the device still has keeps its (possibly roamed) endpoint; a missing one gets
   * the wanted endpoint. Call it rarely (periodically, and after failures): it costs a full read.
   */
  async repairPeers(peers: readonly WireGuardPeerSpec[]): Promise<void> {
    await this.applyCanonical(this.wantedConfigs(peers), true);
  }

  /**
   * applyPeers is updatePeers on device-level peer configurations; it resolves with the diff it
   * applied (empty when the device already agreed and nothing was written).
   */
  applyPeers(wanted: readonly PeerConfig[]): Promise<PeerDiff> {
    return this.applyCanonical(normalizePeerSet(wanted), false);
  }

  /** wantedConfigs validates specs into device configurations, reusing those of unchanged specs. */
  private wantedConfigs(peers: readonly WireGuardPeerSpec[]): PeerConfig[] {
    if (!Array.isArray(peers)) throw invalidArgument("peers", "must be a list");
    const k = this.options.persistentKeepaliveSec;
    const cache = new Map<string, PeerConfig>();
    const want = peers.map((p, i) => {
      // Specs may come from untyped callers: the cache key reads them defensively, peerConfigFromSpec validates.
      // eslint-disable-next-line @typescript-eslint/no-unsafe-member-access
      const id = typeof p === "object" && p !== null ? `${p.pubKey}|${p.vpnIP}|${p.publicIP}|${p.port ?? ""}` : "";
      const hit = this.specCache.get(id);
      // eslint-disable-next-line @typescript-eslint/no-unsafe-argument
      const c = hit ?? peerConfigFromSpec(p, k, `peers[${i}]`); // canonical already
      cache.set(id, c);
      return c;
    });
    checkUnique(want);
    this.specCache = cache;
    return want;
  }

  private applyCanonical(want: readonly PeerConfig[], read: boolean): Promise<PeerDiff> {
    return this.exclusive(async () => {
      this.requireRunning("update peers");
      const own = want.findIndex((p) => p.pubKey === this.publicKey);
      if (own >= 0) throw invalidArgument(`peers[${own}].pubKey`, "is this device's own public key (the caller must exclude itself)");
      const known = read ? undefined : this.written;
      const before = known ?? (await this.readDevice()).peers.map(toPeerConfig);
      const diff = known ? changedOnly(known, want) : diffNormalized(before, keepLearnedEndpoints(before, want));
      if (isEmptyDiff(diff)) {
        this.written = [...want];
        return diff;
      }
      try {
        await this.writePeers(diff, want);
      } catch (err) {
        return this.restore(before, err);
      }
      this.written = [...want];
      this.log.info("updated WireGuard peers", { interface: this.interfaceName, peers: want.length, ...diffSummary(diff), read });
      return diff;
    });
  }

  /** listPeers reads the device's peers with their counters (not serialized with writes). */
  async listPeers(): Promise<DevicePeer[]> {
    this.requireRunning("list peers");
    return (await this.readDevice()).peers;
  }

  /** close removes the device this object created and stops using it; idempotent. */
  close(): Promise<void> {
    return this.exclusive(async () => {
      if (this.state === "closed") return;
      const wasRunning = this.state === "running";
      this.state = "closed";
      if (wasRunning) await this.destroyDevice();
    });
  }

  /** createDevice makes the interface and sets its private key and listen port. */
  protected abstract createDevice(privateKey: Uint8Array): Promise<void>;
  /** readDevice reads the device's configuration and peers. */
  protected abstract readDevice(): Promise<DeviceState>;
  /** writePeers applies `diff` (the change to `wanted`) in one batched device operation. */
  protected abstract writePeers(diff: PeerDiff, wanted: readonly PeerConfig[]): Promise<void>;
  /** destroyDevice removes what createDevice made; it must tolerate a half-created device. */
  protected abstract destroyDevice(): Promise<void>;

  /** run runs a command in the device's namespace, turning failures into WireGuardErrors for `operation`. */
  protected async run(operation: string, file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
    const [f, a] = inNetns(this.options.netns, file, args);
    try {
      return await this.options.runner(f, a, { timeoutMs: this.options.commandTimeoutMs, ...options });
    } catch (err) {
      throw classifyCommandError(err, `${operation} (${this.interfaceName})`, this.interfaceName);
    }
  }

  private async restore(before: PeerConfig[], cause: unknown): Promise<never> {
    const why = cause instanceof Error ? cause.message : String(cause);
    let problem: unknown;
    try {
      this.written = undefined;
      const now = (await this.readDevice()).peers.map(toPeerConfig);
      const back = diffNormalized(now, keepLearnedEndpoints(now, before));
      if (!isEmptyDiff(back)) await this.writePeers(back, before);
      const left = diffPeers((await this.readDevice()).peers.map(toPeerConfig), keepLearnedEndpoints(now, before));
      if (isEmptyDiff(left)) {
        this.written = before;
        const retryable = cause instanceof WireGuardError && cause.retryable;
        throw new WireGuardError("apply-failed", `update peers on ${this.interfaceName}: ${why}; restored and verified the previous ${before.length} peers`, { cause, retryable });
      }
      problem = new Error(`device still differs after restoring: ${JSON.stringify(diffSummary(left))}`);
    } catch (err) {
      if (err instanceof WireGuardError && err.code === "apply-failed") throw err;
      problem = err;
    }
    const keep = cause instanceof WireGuardError && ["interface-missing", "permission-denied", "tool-missing", "not-wireguard"].includes(cause.code);
    const detail = problem instanceof Error ? problem.message : String(problem);
    throw new WireGuardError(keep ? (cause).code : "inconsistent", `update peers on ${this.interfaceName}: ${why}; restoring the previous peers failed: ${detail}`, { cause });
  }

  private requireRunning(operation: string): void {
    if (this.state !== "running") {
      throw new WireGuardError("closed", `${operation} on ${this.interfaceName}: the device is ${this.state === "new" ? "not started (call start())" : "closed"}`);
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/**
 * changedOnly is diffNormalized(written, want) in time linear in the set with small constants:
 * peers whose configuration object is the very one last written (wantedConfigs reuses them for
 * unchanged specs) are skipped, and only the rest goes through the full diff (key rotations
 * included: a rotated key's old and new peer are both among the rest).
 */
function changedOnly(written: readonly PeerConfig[], want: readonly PeerConfig[]): PeerDiff {
  const same = new Set<PeerConfig>(written);
  const kept = new Set<PeerConfig>();
  const wantRest: PeerConfig[] = [];
  for (const w of want) {
    if (same.has(w)) kept.add(w);
    else wantRest.push(w);
  }
  const curRest = kept.size === written.length ? [] : written.filter((c) => !kept.has(c));
  return diffNormalized(curRest, wantRest);
}

/**
 * keepLearnedEndpoints returns `want` with the endpoint left unmanaged (undefined) for every peer
 * `device` already has with an endpoint: a re-read must not undo what WireGuard learned by roaming.
 */
export function keepLearnedEndpoints(device: readonly PeerConfig[], want: readonly PeerConfig[]): PeerConfig[] {
  const withEndpoint = new Set(device.filter((p) => p.endpoint !== undefined).map((p) => p.pubKey));
  return want.map((w) => {
    if (w.endpoint === undefined || !withEndpoint.has(w.pubKey)) return w;
    const { endpoint: _learned, ...rest } = w;
    return rest;
  });
}

