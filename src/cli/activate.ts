import type * as grpc from "@grpc/grpc-js";
import { retryLines } from "./retry.js";
import { access, mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createATLSChannelCredentials } from "../atls/client.js";
import { masterSecretMaxBytes, masterSecretMinBytes } from "../core/keys.js";
import type { AdminConfig } from "../core/mesh-peer.js";
import { writeFileAtomic } from "../shared/atomic-file.js";
import { activateAsCoordinator } from "../pubapi/admin.js";
import { adminWGConfig, adminWGFileName, generateAdminKeyPair } from "./admin-config.js";
import { adminFileName } from "./admin-file.js";
import { adminKeyFile, generateAdminKey, writeAdminKey } from "./admin-key.js";
import { list, required, UsageError, type Command, type IO } from "./command.js";
import { endpointFlag } from "./endpoint.js";
import { Progress } from "./progress.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";


/** activate is `meshctl activate`: it makes one fresh peer the Coordinator and activates the Nodes. */
export const activate: Command = {
  name: "activate",
  summary: "activate a fresh peer as Coordinator and the given peers as Nodes",
  usage: `Usage: meshctl activate --coordinator ENDPOINT [--nodes ENDPOINT,...] [--coordinators ENDPOINT,...]
                               --master-secret FILE --measurements FILE [--out DIR]

Activates the fresh peer at --coordinator as the mesh's Coordinator. It verifies the peer's
attestation (aTLS) against --measurements first, then the Coordinator activates every --nodes peer
(verifying each one's attestation), assigns VPN IPs and rotates state-disk keys. Progress is
streamed to stderr.

Writes, into --out (default: the current directory):
  wg0.conf    wg-quick config for the admin (mode 0600; its private key is made here and never sent)
  admin.json  ownerId, clusterId (hex), adminVPNIP, coordinatorVPNPubKey, adminPubKey (base64),
              coordinatorEndpoints (every Coordinator: admin commands try each until one answers)
  admin.key   the admin signing key (mode 0600): add-nodes and remove-node must be signed with it
Existing files there are never overwritten: the command refuses before it contacts anyone.

Options:
  --coordinator ENDPOINT     the fresh peer to make Coordinator (HOST[:PORT], port 9000 by default)
  --nodes LIST               comma-separated Node endpoints (IP[:PORT])
  --coordinators LIST        further Coordinators (IP[:PORT]), activated by the first one before the
                             Nodes; each runs a member of the shared etcd store (meshd --store managed)
  --master-secret FILE       16 to 64 bytes of secret; its raw bytes are the secret
  --measurements FILE        measurement policy (measurements.json), required; get one with
                             meshctl measurements --from ENDPOINT (trust on first use)
  --out DIR                  where to write wg0.conf and admin.json (default .)

Exit status: 0 when every peer was activated; 1 when something failed (a Node that failed is named,
the others stay activated: retry it with meshctl add-nodes); 2 on a usage error.`,
  options: {
    coordinator: { type: "string" },
    nodes: { type: "string" },
    coordinators: { type: "string" },
    "master-secret": { type: "string" },
    measurements: { type: "string" },
    out: { type: "string" },
  },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const coordinator = endpointFlag(required(v, "coordinator"), "--coordinator");
    const nodes = list(v.nodes).map((n, i) => endpointFlag(n, `--nodes[${i}]`));
    const coordinators = list(v.coordinators).map((n, i) => endpointFlag(n, `--coordinators[${i}]`));
    const validators = await loadValidators(measurementsFlag(v));
    const masterSecret = await readMasterSecret(required(v, "master-secret"), io);
    return runActivate(
      { coordinator, nodes, coordinators, masterSecret, outDir: typeof v.out === "string" ? v.out : ".", credentials: createATLSChannelCredentials(validators, { requireFresh: true }) },
      io,
    );
  },
};

/** ActivateOptions are the parsed inputs of `meshctl activate`. */
export interface ActivateOptions {
  coordinator: string;
  nodes: string[];
  coordinators: string[];
  masterSecret: Uint8Array;
  outDir: string;
  /** credentials verify the fresh Coordinator's attestation (aTLS with requireFresh). */
  credentials: grpc.ChannelCredentials;
}

/**
 * runActivate is meshctl activate after flag parsing: it refuses to overwrite outputs, makes the
 * admin's key pair, activates, writes wg0.conf (0600) and admin.json, and reports failed Nodes.
 * Returns the exit status.
 */
export async function runActivate(o: ActivateOptions, io: IO): Promise<number> {
  await checkOutDir(o.outDir);
  const keys = generateAdminKeyPair();
  const admin = generateAdminKey();
  io.err(`verifying ${o.coordinator} and activating it as Coordinator (${o.nodes.length} Node(s))`);
  const progress = new Progress(io);
  const cfg = await activateAsCoordinator(
    o.coordinator,
    o.credentials,
    { adminVPNPubKey: keys.publicKey, adminPubKey: admin.key.publicKey, masterSecret: o.masterSecret, nodeEndpoints: o.nodes, coordinatorEndpoints: o.coordinators },
    (line) => progress.line(line),
  ).finally(() => progress.end());
  await writeAdminKey(o.outDir, admin.seed);
  await writeOutputs(o.outDir, cfg, keys.privateKey, admin.key.publicKey);
  io.out(`Coordinator ${cfg.coordinator.publicIP} is ${cfg.coordinator.vpnIP}; admin is ${cfg.adminVPNIP}`);
  io.out(`wrote ${join(o.outDir, adminWGFileName)}, ${join(o.outDir, adminFileName)} and ${join(o.outDir, adminKeyFile)}`);
  if (cfg.failed.length > 0) {
    for (const f of cfg.failed) io.err(`  failed: ${f.endpoint}: ${f.error}`);
    const retry = [
      ...retryLines(cfg.failed.filter((f) => o.coordinators.includes(f.endpoint)), (eps) => `meshctl add-coordinators --coordinator ${o.coordinator} --admin-dir ${o.outDir} --coordinators ${eps.join(",")}`),
      ...retryLines(cfg.failed.filter((f) => !o.coordinators.includes(f.endpoint)), (eps) => `meshctl add-nodes --coordinator ${o.coordinator} --admin-dir ${o.outDir} --nodes ${eps.join(",")}`),
    ];
    io.err(`meshctl activate: ${cfg.failed.length} of ${o.nodes.length + o.coordinators.length} peer(s) failed; the Coordinator and the others are active. ${retry.join(" ")}`);
    return 1;
  }
  return 0;
}

/** readMasterSecret reads the secret file's raw bytes, checking size; it never prints the content. */
export async function readMasterSecret(path: string, io: IO): Promise<Buffer> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new Error(`master secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? "cannot read"}`);
  }
  if (!info.isFile()) throw new Error(`master secret file ${path}: not a regular file`);
  if (info.size < masterSecretMinBytes || info.size > masterSecretMaxBytes) {
    throw new Error(`master secret file ${path}: must hold ${masterSecretMinBytes} to ${masterSecretMaxBytes} bytes, holds ${info.size}`);
  }
  if ((info.mode & 0o077) !== 0) io.err(`warning: master secret file ${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  return readFile(path);
}

async function checkOutDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of [adminWGFileName, adminFileName, adminKeyFile]) {
    const p = join(dir, f);
    const exists = await access(p).then(
      () => true,
      () => false,
    );
    if (exists) throw new Error(`${p} already exists; move it away or choose another --out (nothing was activated)`);
  }
}

async function writeOutputs(dir: string, cfg: AdminConfig, adminPrivateKey: string, adminPubKey: Buffer): Promise<void> {
  await writeFileAtomic(join(dir, adminWGFileName), adminWGConfig(cfg, adminPrivateKey));
  const admin = {
    ownerId: cfg.ownerID.toString("hex"),
    clusterId: cfg.clusterID.toString("hex"),
    adminVPNIP: cfg.adminVPNIP,
    coordinatorVPNIP: cfg.coordinator.vpnIP,
    coordinatorVPNPubKey: cfg.coordinator.vpnPubKey,
    coordinatorPublicEndpoint: `${cfg.coordinator.publicIP}:${cfg.coordinator.pubapiPort}`,
    coordinatorEndpoints: cfg.peers.filter((p) => p.role === "coordinator").map((p) => `${p.publicIP}:${p.pubapiPort}`),
    adminPubKey: adminPubKey.toString("base64"),
  };
  await writeFileAtomic(join(dir, adminFileName), `${JSON.stringify(admin, null, 2)}\n`);
}
