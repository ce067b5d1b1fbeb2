/**
 * The vpnapi filter: an nftables table that keeps a Coordinator's vpnapi reachable only through
 * WireGuard. The vpnapi listens without TLS on the Coordinator's VPN IP and identifies callers by
 * their source address; that is sound only for packets WireGuard decrypted (its cryptokey routing
 * admits a source address only from the peer that owns it). Linux accepts packets for any local
 * address on any interface, so without this filter anyone on the public network who routes the VPN
 * IP via the Coordinator's public address reaches the vpnapi with any source address it likes.
 */
import { isIPv4 } from "node:net";
import { nullLogger, type Logger } from "../shared/logger.js";
import { WireGuardError } from "./errors.js";
import { CommandError, execaRunner, findExecutable, inNetns, type CommandRunner } from "./exec.js";

/** VPNAPIFilterOptions describe one vpnapi filter. */
export interface VPNAPIFilterOptions {
  /** wgInterface is the WireGuard interface the vpnapi's packets must arrive on; it also names the table. */
  wgInterface: string;
  /** vpnIP is the Coordinator's VPN IP (IPv4) the vpnapi listens on. */
  vpnIP: string;
  /** port is the vpnapi's TCP port. */
  port: number;
  /**
   * service names what the port serves, in the table name and log lines: "vpnapi" (default) or
   * "metrics" (meshd --metrics-listen vpn:PORT). Each has its own table, so either can go alone.
   */
  service?: "vpnapi" | "metrics";
  /** netns runs nft inside that network namespace (tests); undefined: the process's own namespace. */
  netns?: string;
  /** run executes nft; undefined: execa. */
  run?: CommandRunner;
  logger?: Logger;
}

/**
 * vpnapiFilterTable is the nftables table name (family inet) of the filter for `wgInterface`: one
 * table per interface, so several meshd in one namespace never touch each other's filter. Names of
 * letters, digits, '.' and '-' are kept; any other name is hex-encoded after a double underscore.
 */
export function vpnapiFilterTable(wgInterface: string, service: "vpnapi" | "metrics" = "vpnapi"): string {
  return /^[A-Za-z0-9.-]{1,15}$/.test(wgInterface)
    ? `meshd_${service}_${wgInterface}`
    : `meshd_${service}__${Buffer.from(wgInterface).toString("hex")}`;
}

/**
 * vpnapiFilterRuleset renders the nft script that installs the filter, replacing a stale table of the
 * same name in the same atomic transaction: TCP to vpnIP:port is accepted from the WireGuard
 * interface and from lo (processes of this machine), and dropped from every other interface.
 */
export function vpnapiFilterRuleset(o: Pick<VPNAPIFilterOptions, "wgInterface" | "vpnIP" | "port" | "service">): string {
  if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(o.wgInterface)) throw new WireGuardError("invalid-argument", `vpnapi filter: bad interface name ${JSON.stringify(o.wgInterface)}`);
  if (!isIPv4(o.vpnIP)) throw new WireGuardError("invalid-argument", `vpnapi filter: vpnIP must be an IPv4 address, got ${JSON.stringify(o.vpnIP)}`);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new WireGuardError("invalid-argument", `vpnapi filter: bad port ${o.port}`);
  const t = vpnapiFilterTable(o.wgInterface, o.service);
  const match = `ip daddr ${o.vpnIP} tcp dport ${o.port}`;
  return [
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    "  chain input {",
    "    type filter hook input priority -10; policy accept;",
    `    ${match} iifname "${o.wgInterface}" accept`,
    `    ${match} iifname "lo" accept`,
    `    ${match} drop`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** checkNftAvailable throws WireGuardError("tool-missing") with what to install when nft is missing. */
export function checkNftAvailable(pathEnv?: string): void {
  if (!findExecutable("nft", pathEnv)) {
    throw new WireGuardError(
      "tool-missing",
      "nft not found on PATH: install the nftables package (meshd filters the vpnapi port so that it is reachable only through WireGuard)",
    );
  }
}

/**
 * VPNAPIFilter is an installed filter. install() replaces a stale table left by a meshd that died;
 * remove() deletes the table (idempotent; a table already gone is fine). Not safe for concurrent
 * install/remove of the same interface.
 */
export class VPNAPIFilter {
  readonly table: string;
  readonly #o: VPNAPIFilterOptions;
  readonly #run: CommandRunner;
  #removed = false;

  private constructor(o: VPNAPIFilterOptions) {
    this.#o = o;
    this.table = vpnapiFilterTable(o.wgInterface, o.service);
    this.#run = o.run ?? execaRunner;
  }

  /** install adds (or replaces) the filter; it throws a WireGuardError naming the cause when nft fails. */
  static async install(o: VPNAPIFilterOptions): Promise<VPNAPIFilter> {
    const f = new VPNAPIFilter(o);
    const script = vpnapiFilterRuleset(o);
    if (o.run === undefined) checkNftAvailable();
    await f.#nft(["-f", "-"], script, "install");
    const service = o.service ?? "vpnapi";
    (o.logger ?? nullLogger).info(`${service} filter installed: only WireGuard reaches the ${service}`, { table: f.table, address: `${o.vpnIP}:${o.port}`, interface: o.wgInterface });
    return f;
  }

  /** remove deletes the table; later calls do nothing. */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    try {
      await this.#nft(["delete", "table", "inet", this.table], undefined, "remove");
    } catch (err) {
      if (err instanceof WireGuardError && /No such file or directory/.test(err.message)) return;
      throw err;
    }
  }

  async #nft(args: string[], input: string | undefined, operation: string): Promise<void> {
    const [file, a] = inNetns(this.#o.netns, "nft", args);
    try {
      await this.#run(file, a, input === undefined ? {} : { input });
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      const out = err.output;
      const msg = `vpnapi filter: ${operation} nftables table ${this.table}: ${err.message}`;
      if (err.notFound || /exec of .* failed: No such file/i.test(out)) throw new WireGuardError("tool-missing", `${msg} (install the nftables package)`, { cause: err });
      if (/operation not permitted|permission denied/i.test(out)) throw new WireGuardError("permission-denied", `${msg} (needs root / CAP_NET_ADMIN)`, { cause: err });
      throw new WireGuardError("internal", msg, { cause: err });
    }
  }
}
