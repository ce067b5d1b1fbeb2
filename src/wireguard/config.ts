/**
 * Rendering of WireGuard configuration files: the wg-quick format (`wg0.conf` for the admin) and
 * the plain wg(8) format `wg setconf`/`wg syncconf` read on stdin. Pure; every value is validated,
 * so no field can inject lines. The caller writes the result with mode 0600 (it holds a private key).
 */
import { canonicalCIDR, canonicalEndpoint, canonicalIP, checkPort } from "./addr.js";
import { normalizePeerSet, type PeerConfig } from "./diff.js";
import { invalidArgument } from "./errors.js";
import { checkKey } from "./keys.js";

/** WgQuickPeer is one [Peer] section of a wg-quick file. */
export interface WgQuickPeer {
  /** pubKey is the peer's public key, base64. */
  pubKey: string;
  /** allowedIPs are CIDR prefixes routed to the peer (a mesh peer: its VPN IP /32). */
  allowedIPs: readonly string[];
  /** endpoint is "ip:port" / "[ipv6]:port"; undefined omits the line (the peer dials us). */
  endpoint?: string;
  /** persistentKeepaliveSec omits the line when undefined or 0. */
  persistentKeepaliveSec?: number;
  /** comment is written as a `# comment` line above the section (one line, no newlines). */
  comment?: string;
}

/** WgQuickConfig is the content of a wg-quick file. */
export interface WgQuickConfig {
  /** privKey is the interface's private key, base64. */
  privKey: string;
  /** address is the interface's VPN IP (without prefix). */
  address: string;
  /** prefixLength of Address; undefined means 16 (the VPN is 10.118.0.0/16). */
  prefixLength?: number;
  /** listenPort omits the line when undefined (wg-quick then picks a random port). */
  listenPort?: number;
  peers: readonly WgQuickPeer[];
}

/**
 * renderWgQuickConfig renders a wg-quick file ([Interface] PrivateKey, Address, ListenPort; one
 * [Peer] per peer with PublicKey, AllowedIPs, Endpoint, PersistentKeepalive), "\n"-terminated.
 * It throws WireGuardError("invalid-argument") naming the field of any malformed value; messages
 * never contain the private key.
 */
export function renderWgQuickConfig(cfg: WgQuickConfig): string {
  const lines = ["[Interface]", `PrivateKey = ${checkKey(cfg.privKey, "privKey")}`];
  const bits = cfg.prefixLength ?? 16;
  lines.push(`Address = ${canonicalCIDR(`${canonicalIP(cfg.address, "address")}/${bits}`, "prefixLength")}`);
  if (cfg.listenPort !== undefined) lines.push(`ListenPort = ${checkPort(cfg.listenPort, "listenPort")}`);
  cfg.peers.forEach((p, i) => {
    const f = `peers[${i}]`;
    lines.push("");
    if (p.comment !== undefined) {
      if (/[\r\n]/.test(p.comment)) throw invalidArgument(`${f}.comment`, "must be a single line");
      lines.push(`# ${p.comment}`);
    }
    lines.push(...peerSection(p, f, false));
  });
  return `${lines.join("\n")}\n`;
}

/** WgConfig is the content of a plain wg(8) configuration (no wg-quick keys such as Address). */
export interface WgConfig {
  /** privKey, when given, is written as PrivateKey; omit it to leave the device's key untouched. */
  privKey?: string;
  /** listenPort omits the line when undefined (the device keeps its port). */
  listenPort?: number;
  peers: readonly PeerConfig[];
}

/**
 * renderWgConfig renders the wg(8) format `wg setconf`/`wg syncconf` read (for the kernel
 * backend, fed on stdin). The peer set is validated like diffPeers' wanted set.
 */
export function renderWgConfig(cfg: WgConfig): string {
  const lines = ["[Interface]"];
  if (cfg.privKey !== undefined) lines.push(`PrivateKey = ${checkKey(cfg.privKey, "privKey")}`);
  if (cfg.listenPort !== undefined) lines.push(`ListenPort = ${checkPort(cfg.listenPort, "listenPort", true)}`);
  normalizePeerSet(cfg.peers).forEach((p, i) => lines.push("", ...peerSection(p, `peers[${i}]`, true)));
  return `${lines.join("\n")}\n`;
}

// explicitKeepalive writes "PersistentKeepalive = off" for 0, so `wg syncconf` turns it off too.
function peerSection(p: WgQuickPeer | PeerConfig, f: string, explicitKeepalive: boolean): string[] {
  const lines = ["[Peer]", `PublicKey = ${checkKey(p.pubKey, `${f}.pubKey`)}`];
  const ips = p.allowedIPs.map((c, j) => canonicalCIDR(c, `${f}.allowedIPs[${j}]`));
  if (ips.length > 0) lines.push(`AllowedIPs = ${ips.join(", ")}`);
  if (p.endpoint !== undefined) lines.push(`Endpoint = ${canonicalEndpoint(p.endpoint, `${f}.endpoint`)}`);
  const k = p.persistentKeepaliveSec;
  if (k !== undefined && k !== 0) lines.push(`PersistentKeepalive = ${checkPort(k, `${f}.persistentKeepaliveSec`)}`);
  else if (explicitKeepalive) lines.push("PersistentKeepalive = off");
  return lines;
}

/**
 * parseWgQuickConfig reads a wg-quick file as renderWgQuickConfig writes it (and as an admin may
 * have edited it): [Interface] with PrivateKey, Address (the first one) and ListenPort; [Peer]
 * sections with PublicKey, AllowedIPs, Endpoint and PersistentKeepalive, each comment line right
 * above a section kept as its comment. Keys wg-quick knows but we do not render (DNS, MTU, PostUp, …)
 * are refused rather than silently dropped on a rewrite. Errors name the line, never a key's value.
 */
export function parseWgQuickConfig(text: string): WgQuickConfig {
  let privKey: string | undefined;
  let address: string | undefined;
  let prefixLength: number | undefined;
  let listenPort: number | undefined;
  const peers: WgQuickPeer[] = [];
  let section: "none" | "interface" | "peer" = "none";
  let peer: { pubKey?: string; allowedIPs: string[]; endpoint?: string; persistentKeepaliveSec?: number; comment?: string } | undefined;
  let comment: string | undefined;
  const finishPeer = (line: number): void => {
    if (!peer) return;
    if (peer.pubKey === undefined) throw invalidArgument(`line ${line}`, "a [Peer] section has no PublicKey");
    peers.push({ ...peer, pubKey: peer.pubKey });
    peer = undefined;
  };
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const at = `line ${i + 1}`;
    const line = raw.trim();
    if (line === "") return;
    if (line.startsWith("#")) {
      comment = line.replace(/^#\s?/, "");
      return;
    }
    if (line === "[Interface]" || line === "[Peer]") {
      finishPeer(i + 1);
      if (line === "[Interface]") {
        if (section !== "none") throw invalidArgument(at, "[Interface] must come first, once");
        section = "interface";
      } else {
        if (section === "none") throw invalidArgument(at, "[Peer] before [Interface]");
        section = "peer";
        peer = { allowedIPs: [], ...(comment !== undefined ? { comment } : {}) };
      }
      comment = undefined;
      return;
    }
    comment = undefined;
    const m = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw invalidArgument(at, "expected KEY = VALUE or a [section]");
    const key = m[1];
    const value = m[2];
    if (section === "interface") {
      if (key === "PrivateKey") privKey = checkKey(value, `${at} PrivateKey`);
      else if (key === "Address") {
        const first = value.split(",")[0].trim();
        const cidr = canonicalCIDR(first.includes("/") ? first : `${first}/32`, `${at} Address`);
        address = cidr.split("/")[0];
        prefixLength = Number(cidr.split("/")[1]);
      } else if (key === "ListenPort") listenPort = checkPort(Number(value), `${at} ListenPort`);
      else throw invalidArgument(at, `[Interface] ${key} is not a key meshctl keeps on a rewrite; remove it or keep your own copy`);
    } else if (section === "peer" && peer) {
      if (key === "PublicKey") peer.pubKey = checkKey(value, `${at} PublicKey`);
      else if (key === "AllowedIPs") peer.allowedIPs = value.split(",").map((c) => canonicalCIDR(c.trim(), `${at} AllowedIPs`));
      else if (key === "Endpoint") peer.endpoint = canonicalEndpoint(value, `${at} Endpoint`);
      else if (key === "PersistentKeepalive") peer.persistentKeepaliveSec = value === "off" ? 0 : checkPort(Number(value), `${at} PersistentKeepalive`);
      else throw invalidArgument(at, `[Peer] ${key} is not a key meshctl keeps on a rewrite`);
    } else throw invalidArgument(at, "a key outside any section");
  });
  finishPeer(lines.length);
  if (privKey === undefined) throw invalidArgument("[Interface]", "no PrivateKey");
  if (address === undefined) throw invalidArgument("[Interface]", "no Address");
  return { privKey, address, ...(prefixLength !== undefined ? { prefixLength } : {}), ...(listenPort !== undefined ? { listenPort } : {}), peers };
}
