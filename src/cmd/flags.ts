import { existsSync } from "node:fs";
import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../core/errors.js";
import type { LogFormat, LogLevel } from "../shared/logger.js";
import { formatEndpoint, parseEndpoint } from "../core/validate.js";
import { isLoopbackHost } from "../store/etcd-tls.js";

/** MeshdConfig is meshd's validated command line (DESIGN.md "CLI contract"). */
export interface MeshdConfig {
  listenHost: string;
  listenPort: number;
  publicIP: string;
  stateDir: string;
  vpn: "kernel" | "userspace" | "auto";
  wgInterface: string;
  wgPort: number;
  attestation: "tpm" | "snp";
  /** tcti is the tpm2-tss TCTI config ("device:/dev/tpmrm0" or "swtpm:host=…,port=…"). */
  tcti: string;
  snp: "device" | "simulated";
  disk: string | undefined;
  diskInitialKey: string;
  store: { kind: "memory" } | { kind: "etcd"; endpoints: string[]; tls?: EtcdTLSFiles } | { kind: "managed"; etcdBin: string; clientPort: number; peerPort: number };
  /**
   * insecureStateDir allows a Coordinator to keep its master secret in a state dir that is not the
   * encrypted state volume (--disk on a block device): the local demo only; meshd warns.
   */
  insecureStateDir: boolean;
  updateIntervalMs: number;
  measurements: string | undefined;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** metricsListen is where Prometheus metrics are served: a loopback address, or host "vpn" (the peer's VPN IP, WireGuard only); undefined: off. */
  metricsListen: { host: string; port: number } | undefined;
}

/** EtcdTLSFiles are the PEM files of --etcd-ca/--etcd-cert/--etcd-key (cert and key both or neither). */
export interface EtcdTLSFiles {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

/** meshdUsage is meshd --help. */
export const meshdUsage = `Usage: meshd [flags]

meshd runs on every confidential VM of an attested-mesh. It serves the public API over attested TLS
(its certificate carries a fresh TPM quote or SEV-SNP report bound to the client's nonce) and waits
to be activated: as the Coordinator by an admin (meshctl activate), or as a Node by a Coordinator.

Flags:
  --listen HOST:PORT           pubapi address (default 0.0.0.0:9000)
  --public-ip IP               address other peers use (default: the listen host; required with 0.0.0.0)
  --state-dir DIR              node state, keys, store (default /var/lib/meshd)
  --vpn kernel|userspace       WireGuard backend (default: kernel if it works, else userspace wireguard-go)
  --wg-interface NAME          WireGuard interface (default wg0)
  --wg-port PORT               WireGuard port (default 51820)
  --attestation tpm|snp        evidence platform (default: snp if /dev/sev-guest exists, else tpm)
  --tpm device|swtpm:HOST:PORT TPM for quotes and the activation marker (default device = /dev/tpmrm0)
  --snp device|simulated       SEV-SNP report source (default device = /dev/sev-guest)
  --disk PATH                  LUKS2 state disk (device, mapped name or file); without it disk steps are skipped.
                               Locked after a reboot, it waits for its key: a Node's from a Coordinator,
                               a Coordinator's from another Coordinator or from the admin (meshctl recover)
  --disk-initial-key FILE      the disk's initial passphrase (default /run/cryptsetup-keys.d/state.key)
  --store memory|managed|etcd://HOST:PORT[,HOST:PORT...]   Coordinator store (default memory, persisted
                               in the state dir). managed: every Coordinator runs a member of one etcd
                               cluster (spawned by meshd, data in the state dir, mutual TLS under a
                               CA derived from the master secret, peer traffic on the VPN IP): the
                               store for several Coordinators (meshctl activate --coordinators)
  --etcd-bin FILE              etcd binary for --store managed (default /usr/bin/etcd)
  --etcd-client-port PORT      loopback client port of the managed etcd member (default 2379)
  --etcd-peer-port PORT        peer port of the managed etcd member on the VPN IP (default 2380)
  --etcd-ca FILE               CA (PEM) of etcd's server certificate: TLS to etcd (required unless every endpoint is loopback)
  --etcd-cert FILE             client certificate (PEM) for etcd's --client-cert-auth (with --etcd-key)
  --etcd-key FILE              its private key (PEM)
  --insecure-state-dir         allow a Coordinator's master secret in a state dir that is not an encrypted
                               volume (--disk on a block device maps one); for demos only, logged as a warning
  --measurements FILE          measurement policy for other peers (default: peers measured like this one)
  --update-interval SECONDS    how often Nodes poll the Coordinator (default 10)
  --log-level debug|info|warn|error   (default info)
  --log-format json|text       json: one JSON object per line, for shipping (default); text: for a terminal.
                               Every pubapi/vpnapi call is logged once ("audit": true): method, caller, code, duration
  --metrics-listen HOST:PORT   serve Prometheus metrics at http://HOST:PORT/metrics (off by default).
                               HOST is a loopback address (scrape through a local agent), or "vpn":
                               this peer's VPN IP once it has one, reachable only through WireGuard
                               (an nftables filter drops anything else), so a scraper inside the mesh
                               (the admin) can read every peer
  -h, --help                   this help`;

/** parseMeshdFlags validates argv; errors name the flag. `help` is true for --help. */
export function parseMeshdFlags(argv: string[]): { help: true } | { help: false; config: MeshdConfig } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      listen: { type: "string", default: "0.0.0.0:9000" },
      "public-ip": { type: "string" },
      "state-dir": { type: "string", default: "/var/lib/meshd" },
      vpn: { type: "string" },
      "wg-interface": { type: "string", default: "wg0" },
      "wg-port": { type: "string", default: "51820" },
      attestation: { type: "string" },
      tpm: { type: "string", default: "device" },
      snp: { type: "string", default: "device" },
      disk: { type: "string" },
      "disk-initial-key": { type: "string", default: "/run/cryptsetup-keys.d/state.key" },
      store: { type: "string", default: "memory" },
      "etcd-ca": { type: "string" },
      "etcd-bin": { type: "string", default: "/usr/bin/etcd" },
      "etcd-client-port": { type: "string", default: "2379" },
      "etcd-peer-port": { type: "string", default: "2380" },
      "etcd-cert": { type: "string" },
      "etcd-key": { type: "string" },
      "insecure-state-dir": { type: "boolean", default: false },
      measurements: { type: "string" },
      "update-interval": { type: "string", default: "10" },
      "log-level": { type: "string", default: "info" },
      "log-format": { type: "string", default: "json" },
      "metrics-listen": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return { help: true };
  if (positionals.length > 0) throw new InvalidArgumentError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const listen = parseEndpoint(values.listen, "--listen");
  if (isIP(listen.host) === 0) throw new InvalidArgumentError("--listen: HOST must be an IP address");
  const publicIP = values["public-ip"] ?? listen.host;
  if (isIP(publicIP) === 0) throw new InvalidArgumentError(`--public-ip: not an IP address: ${JSON.stringify(publicIP)}`);
  if (publicIP === "0.0.0.0" || publicIP === "::") throw new InvalidArgumentError("--public-ip is required when --listen binds all addresses");
  const wgInterface = values["wg-interface"];
  if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(wgInterface)) throw new InvalidArgumentError("--wg-interface: 1-15 characters of letters, digits and _=+.-");
  const interval = Number(values["update-interval"]);
  if (!Number.isFinite(interval) || interval < 0.05 || interval > 3600) throw new InvalidArgumentError("--update-interval: seconds between 0.05 and 3600");
  const logLevel = values["log-level"];
  if (!["debug", "info", "warn", "error"].includes(logLevel)) throw new InvalidArgumentError("--log-level: debug, info, warn or error");
  let metricsListen: MeshdConfig["metricsListen"];
  if (values["metrics-listen"] !== undefined) {
    const m = parseEndpoint(values["metrics-listen"], "--metrics-listen");
    if (m.host !== "vpn" && (isIP(m.host) === 0 || !isLoopbackHost(m.host))) {
      throw new InvalidArgumentError(
        `--metrics-listen: HOST must be a loopback address (127.0.0.1 or ::1) or "vpn" (this peer's VPN IP, through WireGuard only), got ${JSON.stringify(m.host)}: metrics are not served to the public network`,
      );
    }
    metricsListen = { host: m.host, port: m.port };
  }
  return {
    help: false,
    config: {
      listenHost: listen.host,
      listenPort: listen.port,
      publicIP,
      stateDir: values["state-dir"],
      vpn: oneOf(values.vpn ?? "auto", ["kernel", "userspace", "auto"], "--vpn"),
      wgInterface,
      wgPort: port(values["wg-port"], "--wg-port"),
      attestation: oneOf(values.attestation ?? (existsSync("/dev/sev-guest") ? "snp" : "tpm"), ["tpm", "snp"], "--attestation"),
      tcti: tctiOf(values.tpm),
      snp: oneOf(values.snp, ["device", "simulated"], "--snp"),
      disk: values.disk,
      diskInitialKey: values["disk-initial-key"],
      store:
        values.store === "managed"
          ? { kind: "managed", etcdBin: values["etcd-bin"], clientPort: port(values["etcd-client-port"], "--etcd-client-port"), peerPort: port(values["etcd-peer-port"], "--etcd-peer-port") }
          : storeOf(values.store, { ca: values["etcd-ca"], cert: values["etcd-cert"], key: values["etcd-key"] }),
      insecureStateDir: values["insecure-state-dir"] === true,
      updateIntervalMs: Math.round(interval * 1000),
      measurements: values.measurements,
      logLevel: logLevel as LogLevel,
      logFormat: oneOf(values["log-format"], ["json", "text"], "--log-format"),
      metricsListen,
    },
  };
}

function oneOf<T extends string>(v: string, allowed: readonly T[], flag: string): T {
  if (!allowed.includes(v as T)) throw new InvalidArgumentError(`${flag}: must be ${allowed.join(" or ")}, got ${JSON.stringify(v)}`);
  return v as T;
}

function port(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n < 1 || n > 65535) throw new InvalidArgumentError(`${flag}: must be a port 1-65535`);
  return n;
}

/** tctiOf turns --tpm into a tpm2-tss TCTI configuration string. */
export function tctiOf(v: string): string {
  if (v === "device") return "device:/dev/tpmrm0";
  if (v.startsWith("device:")) return v;
  const m = /^swtpm:(.+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`--tpm: must be device or swtpm:HOST:PORT, got ${JSON.stringify(v)}`);
  const ep = parseEndpoint(m[1], "--tpm swtpm");
  return `swtpm:host=${ep.host},port=${ep.port}`;
}

function storeOf(v: string, tls: { ca: string | undefined; cert: string | undefined; key: string | undefined }): MeshdConfig["store"] {
  const anyTLS = tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined;
  if (v === "memory") {
    if (anyTLS) throw new InvalidArgumentError("--etcd-ca/--etcd-cert/--etcd-key: only with --store etcd://…");
    return { kind: "memory" };
  }
  const m = /^etcd:\/\/(.+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`--store: must be memory or etcd://HOST:PORT[,HOST:PORT...], got ${JSON.stringify(v)}`);
  const parsed = m[1].split(",").map((e, i) => parseEndpoint(e, `--store etcd endpoint ${i}`));
  const endpoints = parsed.map((ep) => formatEndpoint(ep));
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new InvalidArgumentError("--etcd-cert and --etcd-key: give both or neither");
  if (tls.ca === undefined) {
    if (anyTLS) throw new InvalidArgumentError("--etcd-cert/--etcd-key need --etcd-ca (the CA of etcd's server certificate)");
    const remote = parsed.filter((ep) => !isLoopbackHost(ep.host));
    if (remote.length > 0) {
      throw new InvalidArgumentError(
        `--store: plaintext etcd only on loopback; ${formatEndpoint(remote[0])} needs TLS: give --etcd-ca, --etcd-cert and --etcd-key (the store holds the master secret)`,
      );
    }
    return { kind: "etcd", endpoints };
  }
  return { kind: "etcd", endpoints, tls: { caFile: tls.ca, ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) } };
}
