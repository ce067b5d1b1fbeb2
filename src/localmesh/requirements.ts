/**
 * What a local mesh needs from the machine, and a probe that says what is missing in words an admin
 * can act on (the Debian package to install).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { findExecutable } from "../wireguard/exec.js";

/** debianPackageOf maps every program a local mesh or an e2e test runs to its Debian 12 package. */
export const debianPackageOf: Readonly<Record<string, string>> = {
  ip: "iproute2",
  ss: "iproute2",
  ping: "iputils-ping",
  wg: "wireguard-tools",
  "wg-quick": "wireguard-tools",
  "wireguard-go": "wireguard-go",
  swtpm: "swtpm",
  tpm2_pcrread: "tpm2-tools",
  setpriv: "util-linux",
  nft: "nftables",
};

/** netnsTools are what every namespace test needs (namespaces, WireGuard, ping). */
export const netnsTools: readonly string[] = ["ip", "wg", "wireguard-go", "ping"];

/** localMeshTools are what LocalMesh runs besides node: netnsTools plus the TPM and wg-quick tools. */
export const localMeshTools: readonly string[] = [...netnsTools, "ss", "wg-quick", "swtpm", "tpm2_pcrread", "nft"];

/**
 * missingRequirements returns every reason the machine cannot host network namespaces running
 * `tools` (not Linux, not root, a program or /dev/net/tun missing, namespaces not creatable),
 * each naming what to install; an empty list means it can. It creates and deletes one probe
 * namespace when everything else is present.
 */
export function missingRequirements(tools: readonly string[] = netnsTools): string[] {
  if (process.platform !== "linux") return [`needs Linux, this is ${process.platform}`];
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push("needs root (network namespaces, TUN devices, swtpm): run it with sudo");
  const missing = tools.filter((t) => !findExecutable(t));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => debianPackageOf[t] ?? t))];
    reasons.push(`${missing.join(", ")} not found on PATH: apt-get install ${pkgs.join(" ")}`);
  }
  if (!existsSync("/dev/net/tun")) reasons.push("no /dev/net/tun (wireguard-go needs TUN devices): modprobe tun");
  if (reasons.length > 0 || missing.includes("ip")) return reasons;
  const ns = `am-${randomBytes(3).toString("hex")}-probe`;
  const add = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
  if (add.status !== 0) return [`cannot create a network namespace: ${(add.stderr || String(add.error)).trim()}`];
  spawnSync("ip", ["netns", "del", ns]);
  return [];
}
