/**
 * etcd test helper: one single-member etcd (Debian `etcd-server`) per call, on free loopback ports,
 * with its data in a fresh temp dir. Every process and dir is removed by stop(), by stopAllEtcd()
 * (run automatically after each test file that imports this module), and, for whatever is left, on
 * process exit and SIGINT/SIGTERM.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { execa, type ResultPromise } from "execa";
import { freePort } from "./ports.js";
import { afterAll } from "vitest";
import { registerCleanup } from "../../src/localmesh/cleanup.js";

/** Etcd is one running etcd; `endpoint` is "127.0.0.1:PORT" (what --store etcd:// takes). */
export interface Etcd {
  endpoint: string;
  dataDir: string;
  /** stop terminates etcd (SIGTERM, then SIGKILL after 2 s) and removes dataDir. Idempotent. */
  stop(): Promise<void>;
}

const host = "127.0.0.1";
const readyTimeoutMs = 10_000;
const maxStartAttempts = 5;
const setpriv = "/usr/bin/setpriv";

interface Running {
  child: ResultPromise;
  dataDir: string;
  stop(): Promise<void>;
}
const running = new Set<Running>();


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * EtcdTLSOptions make etcd serve clients over TLS only (https), with --client-cert-auth: a client
 * must present a certificate signed by `ca`. Paths to PEM files (test/helpers/pki.ts makes them).
 */
export interface EtcdTLSOptions {
  ca: string;
  cert: string;
  key: string;
  /** client is a certificate the helper's health check presents. */
  client: { cert: string; key: string };
}

/** healthy asks etcd's /health endpoint (served on the client port) whether it has a leader. */
async function healthy(port: number, tls?: EtcdTLSOptions): Promise<boolean> {
  if (tls) return healthyTLS(port, tls);
  try {
    const res = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(1000) });
    return res.ok && ((await res.json()) as { health?: unknown }).health === "true";
  } catch {
    return false;
  }
}

function healthyTLS(port: number, tls: EtcdTLSOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host, port, path: "/health", servername: "", ca: readFileSync(tls.ca), cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key), timeout: 1000 },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

async function startOnce(tls?: EtcdTLSOptions): Promise<Etcd | "port-taken"> {
  const dataDir = await mkdtemp(join(tmpdir(), "etcd-"));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  if (clientPort === peerPort) return "port-taken";
  const client = `${tls ? "https" : "http"}://${host}:${clientPort}`;
  const peer = `http://${host}:${peerPort}`;
  // setpriv makes the kernel SIGKILL etcd if this process dies without running any handler.
  const [command, ...prefix] = existsSync(setpriv) ? [setpriv, "--pdeathsig", "KILL", "etcd"] : ["etcd"];
  const child = execa(
    command,
    [
      ...prefix,
      "--name", "default",
      "--data-dir", dataDir,
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `default=${peer}`,
      "--log-level", "error",
      "--logger", "zap",
      ...(tls ? ["--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.ca, "--client-cert-auth"] : []),
    ],
    { reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe", cleanup: true },
  );
  let exited = false;
  void child.then(() => (exited = true));
  let stopped: Promise<void> | undefined;
  const entry: Running = {
    child,
    dataDir,
    stop: () =>
      (stopped ??= (async () => {
        running.delete(entry);
        if (!exited) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
          await child;
          clearTimeout(timer);
        }
        await rm(dataDir, { recursive: true, force: true });
      })()),
  };
  running.add(entry);
  registerCleanup(killAllSync);

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited) {
      const r = await child;
      await entry.stop();
      const msg = String(r.stderr ?? "");
      if (/address already in use/i.test(msg)) return "port-taken";
      throw new Error(`etcd exited before it was ready (exit code ${r.exitCode}): ${msg.slice(-2000)}`);
    }
    if (await healthy(clientPort, tls)) break;
    if (Date.now() > deadline) {
      await entry.stop();
      throw new Error(`etcd on ${client} was not healthy within ${readyTimeoutMs} ms`);
    }
    await sleep(50);
  }
  return { endpoint: `${host}:${clientPort}`, dataDir, stop: entry.stop };
}

/** startEtcd starts a single-member etcd (with `tls`: TLS only, client certificates required) and resolves once /health reports a leader. */
export async function startEtcd(options: { tls?: EtcdTLSOptions } = {}): Promise<Etcd> {
  for (let i = 0; i < maxStartAttempts; i++) {
    const e = await startOnce(options.tls);
    if (e !== "port-taken") return e;
  }
  throw new Error(`etcd: ports were taken on each of ${maxStartAttempts} attempts`);
}

/** closedPort returns a loopback port nobody listens on (checked: a connect is refused). */
export async function closedPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once("connect", () => (s.destroy(), resolve(false)));
      s.once("error", () => resolve(true));
    });
    if (refused) return port;
  }
  throw new Error("found no closed loopback port");
}

/** stopAllEtcd stops every etcd this process started and removes their data dirs. */
export async function stopAllEtcd(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop()));
}

/** killAllSync is the last resort on exit and signals (src/localmesh/cleanup.ts runs it): SIGKILL every etcd, remove its data dir. */
function killAllSync(): void {
  for (const r of running) {
    try {
      r.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    rmSync(r.dataDir, { recursive: true, force: true });
  }
  running.clear();
}

// Inside a vitest file, stop this file's etcds after its tests even if a test forgot to.
try {
  afterAll(stopAllEtcd);
} catch {
  // imported outside a vitest collection phase: the exit and signal handlers still clean up
}
