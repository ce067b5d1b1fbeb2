import { accessSync, constants, existsSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { basename } from "node:path";
import { execa, type ResultPromise } from "execa";
import type { PeerConfig, PeerDiff } from "./diff.js";
import { WireGuardError } from "./errors.js";
import { inNetns, requireExecutable } from "./exec.js";
import { diffToPeerChanges, encodeSet, UAPIError, type DeviceState } from "./uapi.js";
import { UAPIClient, uapiSocketPath } from "./uapi-client.js";
import { WireGuardVPN } from "./vpn-device.js";
import { encodeKey, publicKeyBytes } from "./keys.js";
import type { WireGuardOptions } from "./vpn.js";

/** UserspaceVPNOptions adds the wireguard-go specifics to WireGuardOptions. */
export interface UserspaceVPNOptions extends WireGuardOptions {
  /** wireguardGoPath is the wireguard-go binary; undefined means `wireguard-go` on PATH. */
  wireguardGoPath?: string;
  /** socketDir is where wireguard-go puts UAPI sockets; undefined means /var/run/wireguard. */
  socketDir?: string;
  /** startTimeoutMs bounds the wait for wireguard-go's socket; undefined means 5000. */
  startTimeoutMs?: number;
}

const outputTailLines = 20;

/**
 * UserspaceVPN runs a wireguard-go process (in the foreground, as this process's child, killed with
 * it) for its interface and configures it over the UAPI socket: the private key and listen port
 * are written to the socket, never to a command line. Each peer update is one `set=1` operation.
 * See WireGuardVPN for the concurrency and failure contract; close() stops wireguard-go, which
 * removes the interface and its socket.
 */
export class UserspaceVPN extends WireGuardVPN {
  private readonly uapi: UAPIClient;
  private readonly socketPath: string;
  private proc: ResultPromise | undefined;
  private exit: string | undefined;
  private readonly outputTail: string[] = [];

  constructor(private readonly userspace: UserspaceVPNOptions) {
    super(userspace);
    this.socketPath = uapiSocketPath(this.interfaceName, userspace.socketDir);
    this.uapi = new UAPIClient(this.interfaceName, { socketPath: this.socketPath, timeoutMs: this.options.commandTimeoutMs });
  }

  /** pid is the wireguard-go process id while it runs. */
  get pid(): number | undefined {
    return this.exit === undefined ? this.proc?.pid : undefined;
  }

  protected override async createDevice(privateKey: Uint8Array): Promise<void> {
    const bin = this.userspace.wireguardGoPath ?? requireExecutable("wireguard-go", "wireguard-go");
    try {
      accessSync(bin, constants.X_OK);
    } catch (err) {
      throw new WireGuardError("tool-missing", `start ${this.interfaceName}: wireguard-go not found at ${bin}: install the wireguard-go package`, { cause: err });
    }
    const iface = this.interfaceName;
    if (await this.uapi.ping()) {
      const theirs = await this.uapi.get().then((d) => d.publicKey, () => undefined);
      if (theirs !== encodeKey(publicKeyBytes(privateKey))) {
        throw new WireGuardError("busy", `start ${iface}: another wireguard-go already serves ${iface} (${this.socketPath} answers, with another key); interface names must be unique across namespaces`);
      }
      // Our own device (same interface, same private key), left running by an earlier process of
      // ours that died without stopping it (SIGKILL, OOM): stop it and start clean.
      await this.reapOrphan();
    }
    const [file, args] = inNetns(this.options.netns, bin, ["-f", iface]);
    const proc = execa(file, args, {
      env: { WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" },
      stdin: "ignore",
      buffer: false,
      reject: false,
      cleanup: true,
      all: true,
    });
    this.proc = proc;
    this.exit = undefined;
    proc.all?.setEncoding("utf8");
    proc.all?.on("data", (chunk: string) => this.record(chunk));
    void proc.then((r) => {
      this.exit = r.failed && r.exitCode === undefined ? `${r.signal ?? "error"}: ${r.shortMessage}` : `exit status ${r.exitCode ?? r.signal}`;
      this.log.debug("wireguard-go exited", { interface: iface, status: this.exit });
    });

    const deadline = Date.now() + (this.userspace.startTimeoutMs ?? 5000);
    for (;;) {
      if (this.exit !== undefined) throw this.startFailure();
      if (await this.uapi.ping()) break;
      if (Date.now() > deadline) throw new WireGuardError("timeout", `start ${iface}: wireguard-go did not open ${this.socketPath} within ${this.userspace.startTimeoutMs ?? 5000} ms${this.tailText()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      await this.uapi.set({ privateKey, listenPort: this.options.listenPort });
    } catch (err) {
      if (err instanceof UAPIError && err.errno === -98) {
        throw new WireGuardError("busy", `start ${iface}: UDP port ${this.options.listenPort} is already in use`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * reapOrphan stops the wireguard-go that serves this interface for an earlier owner (found by its
   * command line `wireguard-go -f <interface>`): SIGTERM, SIGKILL after 3 s, then the stale socket goes.
   */
  private async reapOrphan(): Promise<void> {
    const pids = wireguardGoPids(this.interfaceName);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone already
      }
    }
    const deadline = Date.now() + 3_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const pid of pids.filter(alive)) process.kill(pid, "SIGKILL");
    while (pids.some(alive)) await new Promise((r) => setTimeout(r, 20));
    if (existsSync(this.socketPath) && !(await this.uapi.ping())) unlinkSync(this.socketPath);
    if (await this.uapi.ping()) throw new WireGuardError("busy", `start ${this.interfaceName}: its own device from an earlier run still answers after stopping ${pids.length} wireguard-go process(es)`);
    this.log.warn("stopped the wireguard-go an earlier process left running for this interface; starting it again", { interface: this.interfaceName, pids: pids.join(",") });
  }

  protected override async readDevice(): Promise<DeviceState> {
    this.checkAlive("read device");
    try {
      return await this.uapi.get();
    } catch (err) {
      throw await this.explain(err, "read device");
    }
  }

  protected override async writePeers(diff: PeerDiff, _wanted: readonly PeerConfig[]): Promise<void> {
    this.checkAlive("update peers");
    try {
      await this.sendSet(encodeSet({ peers: diffToPeerChanges(diff) }));
    } catch (err) {
      throw await this.explain(err, "update peers");
    }
  }

  /** sendSet sends one encoded `set=1` request; a seam for tests that inject device failures. */
  protected async sendSet(request: string): Promise<void> {
    await this.uapi.setRaw(request);
  }

  protected override async destroyDevice(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    if (this.exit === undefined) {
      proc.kill("SIGTERM");
      const stopped = await Promise.race([proc.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      if (!stopped) {
        proc.kill("SIGKILL");
        await proc;
      }
    }
    // wireguard-go removes its socket when it stops cleanly; after SIGKILL the stale file stays.
    if (existsSync(this.socketPath) && !(await this.uapi.ping())) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** explain turns a socket failure caused by wireguard-go dying into "interface-missing" with its exit status. */
  private async explain(err: unknown, operation: string): Promise<unknown> {
    if (err instanceof UAPIError || !this.proc) return err;
    if (this.exit === undefined) await Promise.race([this.proc, new Promise((r) => setTimeout(r, 200))]);
    if (this.exit === undefined) return err;
    return new WireGuardError("interface-missing", `${operation} on ${this.interfaceName}: wireguard-go exited (${this.exit})${this.tailText()}`, { cause: err });
  }

  private checkAlive(operation: string): void {
    if (this.proc && this.exit !== undefined) {
      throw new WireGuardError("interface-missing", `${operation} on ${this.interfaceName}: wireguard-go exited (${this.exit})${this.tailText()}`);
    }
  }

  private startFailure(): WireGuardError {
    const out = this.outputTail.join("\n");
    const iface = this.interfaceName;
    const msg = `start ${iface}: wireguard-go exited (${this.exit})${this.tailText()}`;
    if (/operation not permitted|permission denied/i.test(out)) return new WireGuardError("permission-denied", `${msg}: creating a TUN device needs root (CAP_NET_ADMIN)`);
    if (/device or resource busy/i.test(out)) return new WireGuardError("busy", `${msg}: an interface named ${iface} already exists in the namespace`);
    if (/socket in use/i.test(out)) return new WireGuardError("busy", `${msg}: another wireguard-go serves ${iface}`);
    if (/Cannot open network namespace/i.test(out)) return new WireGuardError("invalid-argument", `${msg}: network namespace ${this.options.netns} does not exist`);
    if (/\/dev\/net\/tun|no such file or directory/i.test(out)) return new WireGuardError("unsupported", `${msg}: no TUN support (/dev/net/tun)`);
    return new WireGuardError("internal", msg);
  }

  private record(chunk: string): void {
    for (const line of chunk.split("\n")) {
      if (line.trim() === "") continue;
      this.outputTail.push(line.trim());
      if (this.outputTail.length > outputTailLines) this.outputTail.shift();
      this.log.debug("wireguard-go", { interface: this.interfaceName, line: line.trim() });
    }
  }

  private tailText(): string {
    return this.outputTail.length > 0 ? `: ${this.outputTail.slice(-3).join(" | ")}` : "";
  }
}

/** wireguardGoPids lists the wireguard-go processes whose command line serves `iface` (`… -f <iface>`). */
function wireguardGoPids(iface: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean);
      if (argv.length >= 2 && basename(argv[0]) === "wireguard-go" && argv.at(-1) === iface) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** alive says whether a process exists (signal 0). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
