import * as grpc from "@grpc/grpc-js";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Issuer } from "../attestation/attestation.js";
import { Tpm } from "../attestation/native.js";
import { hexIndex, provisionSimulatedTpm } from "../attestation/tpm-provision.js";
import { SNPDeviceIssuer } from "../attestation/snp-device.js";
import { SimulatedSNPIssuer } from "../attestation/snp-simulated.js";
import { sharedSimulatedSNPChain } from "../attestation/snp-test-chain.js";
import { TPMIssuer } from "../attestation/tpm-issuer.js";
import { TPMMarker } from "../attestation/tpm-marker.js";
import { TPMKeySealer } from "../attestation/tpm-seal.js";
import { createCallerVerifier } from "../atls/caller-proof.js";
import { createATLSServerCredentials } from "../atls/server.js";
import { validatorsFor } from "../attestation/validators.js";
import { systemClock } from "../core/clock.js";
import { errorMessage, FailedPreconditionError } from "../core/errors.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { MeshPeer } from "../core/mesh-peer.js";
import { MirroredNodeState, NodeStateFile, type NodeStateStore } from "../core/node-state.js";
import { AuthenticatedNodeState } from "../core/node-state-auth.js";
import type { KeySealer } from "../core/sealer.js";
import type { StateDisk } from "../core/disk.js";
import { LUKSTokenNodeState } from "../diskencryption/bootstrap-token.js";
import { StateVolume } from "../diskencryption/state-volume.js";
import type { Store } from "../core/store.js";
import { LUKSDisk } from "../diskencryption/luks-disk.js";
import { PubAPIClient } from "../pubapi/client.js";
import { createPubAPIServer } from "../pubapi/server.js";
import { VPNAPIClient, vpnapiPort } from "../vpnapi/client.js";
import { createVPNAPIServer } from "../vpnapi/server.js";
import { checkNftAvailable, VPNAPIFilter } from "../wireguard/vpnapi-filter.js";
import { meshdUsage, parseMeshdFlags, type MeshdConfig } from "./flags.js";
import { openStore } from "./store.js";
import { peerPolicy } from "./peer-policy.js";
import { MemoryStore } from "../store/store-memory.js";
import { DeferredStore } from "../core/store-members.js";
import type { ManagedEtcd } from "../store/managed-etcd.js";
import { openVPN } from "./vpn.js";
import { MeshMetrics, serveMetrics, type MeshView } from "../metrics/metrics.js";
import { vpnMetricsServer } from "./vpn-metrics.js";
import { checkCrashPointEnv } from "../shared/crash.js";
import { lockStateDir } from "./state-lock.js";
import { formatEndpoint } from "../core/validate.js";

/** Closer releases one resource at shutdown. */
type Closer = () => Promise<void> | void;

/**
 * startMeshd wires the real components for `config` and starts serving. It returns a function that
 * shuts everything down in reverse order.
 */
export async function startMeshd(config: MeshdConfig, logger: Logger): Promise<() => Promise<void>> {
  const closers: Closer[] = [];
  const shutdown = async (): Promise<void> => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn("shutdown step failed", { error: errorMessage(err) });
      }
    }
  };
  try {
    // Fail before anything else when the vpnapi filter could not be installed later.
    checkNftAvailable();
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    closers.push(await lockStateDir(config.stateDir));
    const tpm = await Tpm.open(config.tcti).catch((err: unknown) => {
      throw new FailedPreconditionError(`TPM ${config.tcti}: ${errorMessage(err)} (meshd needs a TPM for its activation marker; use --tpm)`, { cause: err });
    });
    closers.push(() => tpm.close());
    if (config.tcti.startsWith("swtpm:")) {
      // A socket TPM has no resource manager: objects a killed meshd loaded stay and fill its three
      // slots (then "out of memory for object contexts"). This meshd owns the TPM: start clean.
      const flushed = await tpm.flushTransients();
      if (flushed > 0) logger.info("flushed transient objects an earlier process left in the simulated TPM", { objects: flushed });
      // A simulated TPM gets an AK template and a test-CA AK certificate in NV, like a GCE vTPM.
      const written = await provisionSimulatedTpm(tpm);
      if (written.length > 0) logger.info("provisioned the simulated TPM's AK (test CA certificate: accepted only with tpm.allowTestRoot)", { nvIndices: written.map(hexIndex).join(",") });
    }
    const issuer = await makeIssuer(config, tpm);
    closers.push(() => (issuer as { close?: () => Promise<void> }).close?.());
    const policy = await peerPolicy(config, issuer, logger);
    // Metrics read the peer at scrape time (peerRef is set once it started).
    let peerRef: MeshPeer | undefined; // eslint-disable-line prefer-const -- set below, once the peer started
    const metrics = config.metricsListen ? new MeshMetrics(meshView(() => peerRef)) : undefined;
    const validators = metrics ? metrics.validators(validatorsFor(policy)) : validatorsFor(policy);
    const { disk, nodeState, locked, encrypted } = await openStateDisk(config, new TPMKeySealer(tpm), logger.child("disk"));
    const vpnMetrics = metrics && config.metricsListen?.host === "vpn" ? vpnMetricsServer(metrics, config.wgInterface, config.metricsListen.port, logger.child("metrics")) : undefined;
    if (vpnMetrics) closers.push(() => vpnMetrics.close());
    const vpn = openVPN(config, logger.child("wireguard"), vpnMetrics && ((ip) => vpnMetrics.serveOn(ip)));
    closers.push(() => vpn.close());
    // Open the device now when its key can be read (it can unless a locked state disk holds it).
    if (!locked) await vpn.getPublicKey();
    else {
      const role = (await nodeState.load())?.role;
      if (role === undefined) {
        // Nothing is mounted at the state dir: a fresh peer would keep its secrets (store, wg.key) in
        // the plain directory beneath it, where the host reads them.
        throw new FailedPreconditionError(
          `--disk ${config.disk}: the state disk is LUKS2 but locked, and this peer has no node state: it is not a disk this peer formatted (give a blank disk)`,
        );
      }
      logger.info(
        role === "coordinator"
          ? "state disk is locked: this Coordinator waits for its key from another Coordinator, or from the admin (meshctl recover), before anything else"
          : "state disk is locked: waiting for its key from a Coordinator before anything else",
      );
    }
    /** onStateUnlocked opens what lives on the state volume once a locked one was unlocked. */
    let onStateUnlocked: (() => Promise<void>) | undefined;
    let store: Store;
    let members: ManagedEtcd | undefined;
    if (config.store.kind === "managed") {
      if (!encrypted && !config.insecureStateDir) {
        throw new FailedPreconditionError(`--store managed: the state dir ${config.stateDir} is not an encrypted volume and the etcd member would hold the master secret there; give --disk a block device or, for a demo, --insecure-state-dir`);
      }
      const deferred = new DeferredStore();
      store = deferred;
      const { ManagedEtcd } = await import("../store/managed-etcd.js"); // etcd3 loads only when used
      members = new ManagedEtcd({ etcdBin: config.store.etcdBin, dir: join(config.stateDir, "etcd"), clientPort: config.store.clientPort, peerPort: config.store.peerPort, store: deferred, logger: logger.child("etcd") });
      const m = members;
      closers.push(() => m.close());
    } else if (locked && config.store.kind === "memory") {
      // The embedded store lives on the locked volume: open it once the disk key arrived.
      const deferred = new DeferredStore();
      store = deferred;
      onStateUnlocked = async () => deferred.attach(await openStore(config, encrypted, logger));
    } else store = await openStore(config, encrypted, logger);
    const own = store;
    /** Only this peer's own store is discarded when it starts fresh: never an external etcd others share. */
    const discardUncommitted = members
      ? async () => {
          if (await members.discardUncommitted()) logger.warn("fresh peer: removed the etcd member data an activation interrupted before its commit point left");
        }
      : own instanceof MemoryStore
        ? async () => {
            const n = await own.discardAll();
            if (n > 0) logger.warn("fresh peer: discarded what an activation interrupted before its commit point wrote to the store", { keys: n });
          }
        : undefined;
    const closeStore = store;
    closers.push(() => closeStore.close());
    if (metrics) store = metrics.store(store);
    const peerClient = new PubAPIClient({ validators, issuer });
    closers.push(() => peerClient.close());
    const peer = await MeshPeer.start({
      publicIP: config.publicIP,
      pubapiPort: config.listenPort,
      wgPort: config.wgPort,
      vpn,
      disk,
      marker: new TPMMarker(tpm),
      nodeState,
      store,
      ...(members ? { members } : {}),
      stateLocked: locked,
      ...(onStateUnlocked ? { onStateUnlocked } : {}),
      ...(discardUncommitted ? { discardUncommitted } : {}),
      peerClient,
      // A poll is small and answered from memory or the store: a Coordinator that takes two
      // intervals (at least 3 s, at most 10 s) is treated as silent and the Node moves on.
      dialCoordinator: (ip) => new VPNAPIClient(`${ip}:${vpnapiPort}`, Math.min(10_000, Math.max(3_000, 2 * config.updateIntervalMs))),
      callerVerifier: createCallerVerifier(validators),
      updateIntervalMs: config.updateIntervalMs,
      clock: systemClock,
      logger: logger.child("peer"),
      ...(metrics ? { events: metrics.events } : {}),
      onCoordinator: async (vpnIP) => {
        // The filter first: the vpnapi trusts source addresses, which only WireGuard authenticates.
        const filter = await VPNAPIFilter.install({ wgInterface: config.wgInterface, vpnIP, port: vpnapiPort, logger: logger.child("vpnapi-filter") });
        closers.push(() => filter.remove());
        const server = createVPNAPIServer(peerRef!, logger.child("vpnapi"), metrics ? { onPoll: () => metrics.poll() } : {});
        closers.push(() => server.forceShutdown());
        await bind(server, `${vpnIP}:${vpnapiPort}`, grpc.ServerCredentials.createInsecure());
        logger.info("serving the vpnapi", { address: `${vpnIP}:${vpnapiPort}` });
      },
    });
    peerRef = peer;
    closers.push(() => peer.close());
    const atls = createATLSServerCredentials(issuer, { logger: logger.child("atls"), ...(metrics ? { onHandshake: (r, c) => metrics.handshake(r, c) } : {}) });
    const pub = createPubAPIServer({ peer, logger: logger.child("pubapi"), connections: atls.connections });
    closers.push(() => pub.forceShutdown());
    const address = config.listenHost.includes(":") ? `[${config.listenHost}]:${config.listenPort}` : `${config.listenHost}:${config.listenPort}`;
    await bind(pub, address, atls);
    logger.info("serving the pubapi over aTLS", { address, platform: issuer.platform, state: peer.state });
    if (metrics && config.metricsListen && !vpnMetrics) {
      const served = await serveMetrics(metrics, config.metricsListen.host, config.metricsListen.port, logger.child("metrics"));
      closers.push(() => served.close());
      logger.info("serving Prometheus metrics", { address: `http://${formatEndpoint(config.metricsListen)}/metrics` });
    }
    await peer.resume();
    return shutdown;
  } catch (err) {
    await shutdown();
    throw err;
  }
}

/** meshView is what the metrics read from the running peer at scrape time. */
function meshView(peer: () => MeshPeer | undefined): MeshView {
  return {
    state: () => peer()?.state ?? "Starting",
    resourceVersion: () => {
      const p = peer();
      return p?.coordinatorVPNIP !== undefined ? p.updates().version : p?.nodeResourceVersion;
    },
    peersByRole: async () => {
      const p = peer();
      if (p?.coordinatorVPNIP === undefined) return undefined;
      const counts: Record<string, number> = { coordinator: 0, node: 0, admin: 0 };
      for (const r of (await p.getUpdate(-1)).peers ?? []) counts[r.role] = (counts[r.role] ?? 0) + 1;
      return counts;
    },
    openStreams: () => {
      const p = peer();
      return p?.coordinatorVPNIP !== undefined ? p.updates().watchers : 0;
    },
  };
}

/**
 * diskPBKDF is used for every keyslot meshd makes. State-disk keys are 32 random or HKDF-derived
 * bytes, never passwords, so key stretching adds nothing and argon2's memory would hurt small VMs.
 */
const diskPBKDF = { type: "pbkdf2", iterations: 1000 } as const;

/**
 * openStateDisk sets up --disk. A block device is the real state disk (DESIGN.md): formatted on
 * first boot, mapped as `state` and mounted at the state dir, node state kept as public bootstrap
 * data in its LUKS2 header; a file is the embedded default (a LUKS2 header whose key is rotated,
 * no mapping). Without --disk, disk steps are skipped. Either way the node state is authenticated
 * with a MAC key sealed to the TPM's boot PCRs (`sealer`) before anything in it is used.
 */
async function openStateDisk(
  config: MeshdConfig,
  sealer: KeySealer,
  logger: Logger,
): Promise<{ disk: StateDisk | undefined; nodeState: NodeStateStore; locked: boolean; encrypted: boolean }> {
  const fileState = new NodeStateFile(join(config.stateDir, "node-state.json"));
  const authenticated = new AuthenticatedNodeState(fileState, sealer);
  if (!config.disk) {
    logger.info("no --disk: state-disk steps will be skipped");
    return { disk: undefined, nodeState: authenticated, locked: false, encrypted: false };
  }
  const info = await stat(config.disk).catch((err: NodeJS.ErrnoException) => {
    throw new FailedPreconditionError(`--disk ${config.disk}: ${err.code === "ENOENT" ? "no such device or file" : err.message}`);
  });
  if (info.isBlockDevice()) {
    const { volume, state } = await StateVolume.prepare({ device: config.disk, mountPoint: config.stateDir, initialKeyFile: config.diskInitialKey, pbkdf: diskPBKDF, logger });
    logger.info("state disk prepared", { device: config.disk, state });
    // The node state is public bootstrap data in the header (authenticated by its sealed-key tag),
    // mirrored inside the encrypted volume, which must hold the same record once unlocked.
    const nodeState = new AuthenticatedNodeState(new MirroredNodeState(new LUKSTokenNodeState(config.disk), fileState), sealer);
    return { disk: volume, nodeState, locked: state === "locked", encrypted: true };
  }
  const disk = new LUKSDisk({ device: config.disk, initialKeyFile: config.diskInitialKey, pbkdf: diskPBKDF, logger });
  await disk.checkLUKS2();
  return { disk, nodeState: authenticated, locked: false, encrypted: false };
}

async function makeIssuer(config: MeshdConfig, tpm: Tpm): Promise<Issuer> {
  if (config.attestation === "tpm") return TPMIssuer.create(tpm);
  if (config.snp === "simulated") return new SimulatedSNPIssuer({ chain: sharedSimulatedSNPChain() });
  return new SNPDeviceIssuer();
}

function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(new Error(`listen on ${address}: ${err.message}`, { cause: err })) : resolve(port))),
  );
}

/** run is the meshd process entry (bin/meshd.js). */
export function run(): void {
  // tpm2-tss logs its own errors to stderr; ours already carry the TSS call and return code.
  process.env.TSS2_LOG ??= "all+none";
  let parsed;
  try {
    checkCrashPointEnv();
    parsed = parseMeshdFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`meshd: ${errorMessage(err)} (see meshd --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) {
    process.stdout.write(`${meshdUsage}\n`);
    return;
  }
  const logger = createLogger((l) => process.stderr.write(`${l}\n`), { level: parsed.config.logLevel, component: "meshd", format: parsed.config.logFormat });
  startMeshd(parsed.config, logger).then(
    (shutdown) => {
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info("shutting down", { signal });
        void shutdown().then(() => process.exit(0));
      };
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
    },
    (err: unknown) => {
      process.stderr.write(`meshd: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
