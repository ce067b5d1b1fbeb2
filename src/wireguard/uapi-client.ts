import { connect } from "node:net";
import { join } from "node:path";
import { WireGuardError } from "./errors.js";
import { decodeGet, decodeReply, encodeSet, getRequest, type DeviceState, type UAPISetRequest } from "./uapi.js";

/** uapiSocketDir is where userspace WireGuard implementations put their UAPI sockets on Linux. */
export const uapiSocketDir = "/var/run/wireguard";

/**
 * uapiSocketPath is the UAPI socket of interface `iface`. The directory is shared by all network
 * namespaces (it is a file path), so interface names must be unique across namespaces.
 */
export function uapiSocketPath(iface: string, dir: string = uapiSocketDir): string {
  return join(dir, `${iface}.sock`);
}

/** UAPIClientOptions configures a UAPIClient. */
export interface UAPIClientOptions {
  /** socketPath overrides the socket; undefined means uapiSocketPath(iface). */
  socketPath?: string;
  /** timeoutMs bounds one request/reply exchange; undefined means 10000. */
  timeoutMs?: number;
}

/**
 * UAPIClient speaks the cross-platform configuration protocol to one userspace device. Every call
 * uses its own connection (a failed `set=1` leaves unread lines the device would misparse), so it is
 * safe to call concurrently; the device applies operations one at a time. Nothing to close.
 */
export class UAPIClient {
  /** socketPath is the UNIX socket this client talks to. */
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(
    /** iface is the interface name, used for the default socket path and in messages. */
    readonly iface: string,
    options: UAPIClientOptions = {},
  ) {
    this.socketPath = options.socketPath ?? uapiSocketPath(iface);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** get reads the device's configuration and peers. */
  async get(): Promise<DeviceState> {
    return decodeGet(await this.exchange(getRequest, "get"));
  }

  /** set applies one `set=1` operation; it throws UAPIError when the device answers errno≠0. */
  async set(req: UAPISetRequest): Promise<void> {
    await this.setRaw(encodeSet(req));
  }

  /** setRaw sends an already encoded `set=1` request (ending in an empty line) and checks the reply. */
  async setRaw(request: string): Promise<void> {
    decodeReply(await this.exchange(request, "set"), "set");
  }

  /** ping reports whether a device answers on the socket (a `get=1` succeeds) within the timeout. */
  async ping(): Promise<boolean> {
    try {
      await this.exchange(getRequest, "get");
      return true;
    } catch {
      return false;
    }
  }

  /** exchange sends one request and returns the raw reply up to and including its empty line. */
  exchange(request: string, operation: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const sock = connect(this.socketPath);
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(Buffer.concat(chunks).toString("utf8"));
      };
      const timer = setTimeout(
        () => finish(new WireGuardError("timeout", `UAPI ${operation} on ${this.iface}: no reply within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      sock.on("connect", () => sock.end(request));
      sock.on("data", (d: Buffer) => {
        chunks.push(d);
        if (endsWithBlankLine(chunks)) finish();
      });
      sock.on("end", () => finish(endsWithBlankLine(chunks) ? undefined : new WireGuardError("internal", `UAPI ${operation} on ${this.iface}: connection closed before the reply ended`)));
      sock.on("error", (err: NodeJS.ErrnoException) => finish(this.socketError(err, operation)));
    });
  }

  private socketError(err: NodeJS.ErrnoException, operation: string): WireGuardError {
    const where = `UAPI ${operation} on ${this.iface} (${this.socketPath})`;
    switch (err.code) {
      case "ENOENT":
        return new WireGuardError("interface-missing", `${where}: no such socket: interface ${this.iface} does not exist or is not a userspace WireGuard device (is wireguard-go running?)`, { cause: err });
      case "ECONNREFUSED":
        return new WireGuardError("interface-missing", `${where}: nobody listens on the socket: the wireguard-go process of ${this.iface} is gone`, { cause: err });
      case "EACCES":
      case "EPERM":
        return new WireGuardError("permission-denied", `${where}: permission denied: configuring WireGuard needs root`, { cause: err });
      default:
        return new WireGuardError("internal", `${where}: ${err.message}`, { cause: err });
    }
  }
}

function endsWithBlankLine(chunks: readonly Buffer[]): boolean {
  const last = chunks[chunks.length - 1];
  if (!last || last.length === 0) return false;
  if (last.length >= 2) return last[last.length - 1] === 0x0a && last[last.length - 2] === 0x0a;
  const prev = chunks[chunks.length - 2];
  return last[0] === 0x0a && prev !== undefined && prev[prev.length - 1] === 0x0a;
}
