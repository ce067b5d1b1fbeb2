import type * as grpc from "@grpc/grpc-js";
import { retryLines } from "./retry.js";
import { access, mkdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { createATLSChannelCredentials } from "../atls/client.js";
import { masterSecretMaxBytes, masterSecretMinBytes } from "../core/keys.js";
import type { AdminConfig } from "../core/mesh-peer.js";
import type { NodeFailure } from "../core/coordinator.js";
import { writeFileAtomic } from "../shared/atomic-file.js";
import { activateAdditionalCoordinators, activateAdditionalNodes, activateAsCoordinator } from "../pubapi/admin.js";
import { adminWGConfig, adminWGFileName, generateAdminKeyPair, mergeAdminWGConfig } from "./admin-config.js";
import { adminFileName } from "./admin-file.js";
import { adminKeyFile, adminKeyOf, generateAdminKey, readAdminKey, writeAdminKey } from "./admin-key.js";
import { rememberCoordinators } from "./coordinators.js";
import { errorMessage } from "../core/errors.js";
import { checkKey, publicKeyOf } from "../wireguard/keys.js";
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
Until they are written, the admin's new keys are kept in --out/activate.pending.json (mode 0600).

Interrupted (the connection dropped, the Coordinator's meshd was killed)? Re-run the same command.
It uses the kept keys: a peer that had not committed the activation is fresh again and is activated
from the start; a Coordinator that had committed it (it finishes its own part when its meshd runs
again) answers with the admin's config, and this command then activates the peers not in the mesh
yet, signed with the kept admin key (as add-coordinators and add-nodes would).

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
    let verified = false;
    const onVerified = (): void => void (verified = true);
    return runActivate(
      {
        coordinator,
        nodes,
        coordinators,
        masterSecret,
        outDir: typeof v.out === "string" ? v.out : ".",
        credentials: createATLSChannelCredentials(validators, { requireFresh: true, onVerified }),
        resumeCredentials: createATLSChannelCredentials(validators, { onVerified }),
        contacted: () => verified,
      },
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
  /**
   * resumeCredentials verify the Coordinator when an interrupted activation is resumed (aTLS
   * without requireFresh: a Coordinator that committed it is marked). It answers only the same
   * master secret and admin keys. undefined: `credentials`.
   */
  resumeCredentials?: grpc.ChannelCredentials;
  /**
   * contacted says whether a peer passed verification, so the request (with the master secret) may
   * have gone out. When it did not, a failure cannot have activated anything: the kept keys are
   * dropped. undefined: assume it may have.
   */
  contacted?: () => boolean;
}

/**
 * runActivate is meshctl activate after flag parsing: it refuses to overwrite outputs, makes the
 * admin's key pair (or takes the one an interrupted run kept), activates, writes wg0.conf (0600),
 * admin.key and admin.json, and reports failed Nodes. Returns the exit status.
 */
export async function runActivate(o: ActivateOptions, io: IO): Promise<number> {
  const pendingPath = join(o.outDir, pendingFile);
  await checkOutDir(o.outDir, pendingPath);
  const pending = await pendingKeys(o.outDir, io);
  const { keys, admin } = pending;
  io.err(`verifying ${o.coordinator} and activating it as Coordinator (${o.nodes.length} Node(s))`);
  const progress = new Progress(io);
  const creds = pending.resumed ? (o.resumeCredentials ?? o.credentials) : o.credentials;
  const cfg = await activateAsCoordinator(
    o.coordinator,
    creds,
    { adminVPNPubKey: keys.publicKey, adminPubKey: admin.key.publicKey, masterSecret: o.masterSecret, nodeEndpoints: o.nodes, coordinatorEndpoints: o.coordinators },
    (line) => progress.line(line),
  )
    .catch(async (err: unknown) => {
      // Keys this run made and never sent (no peer passed verification) go; kept ones always stay:
      // a Coordinator may have committed them, and only they can finish that activation.
      if (!pending.resumed && o.contacted && !o.contacted()) {
        await rm(pendingPath, { force: true });
        throw err;
      }
      throw new Error(
        `${errorMessage(err)}\nmeshctl activate: if the Coordinator got as far as committing the activation, it finishes it when its meshd runs again; ` +
          `re-run this same command then: it uses the keys kept in ${pendingPath} and resumes (a peer that is still fresh is activated from the start)`,
        { cause: err },
      );
    })
    .finally(() => progress.end());
  await writeAdminKey(o.outDir, admin.seed);
  await writeOutputs(o.outDir, cfg, keys.privateKey, admin.key.publicKey);
  const failed = [...cfg.failed];
  if (pending.resumed) failed.push(...(await activateTheRest(o, cfg, creds, io)));
  await rm(pendingPath, { force: true });
  io.out(`Coordinator ${cfg.coordinator.publicIP} is ${cfg.coordinator.vpnIP}; admin is ${cfg.adminVPNIP}`);
  io.out(`wrote ${join(o.outDir, adminWGFileName)}, ${join(o.outDir, adminFileName)} and ${join(o.outDir, adminKeyFile)}`);
  if (failed.length > 0) {
    for (const f of failed) io.err(`  failed: ${f.endpoint}: ${f.error}`);
    const retry = [
      ...retryLines(failed.filter((f) => o.coordinators.includes(f.endpoint)), (eps) => `meshctl add-coordinators --coordinator ${o.coordinator} --admin-dir ${o.outDir} --coordinators ${eps.join(",")}`),
      ...retryLines(failed.filter((f) => !o.coordinators.includes(f.endpoint)), (eps) => `meshctl add-nodes --coordinator ${o.coordinator} --admin-dir ${o.outDir} --nodes ${eps.join(",")}`),
    ];
    io.err(`meshctl activate: ${failed.length} of ${o.nodes.length + o.coordinators.length} peer(s) failed; the Coordinator and the others are active. ${retry.join(" ")}`);
    return 1;
  }
  return 0;
}

/**
 * activateTheRest finishes a resumed activation: a Coordinator that had committed it answers with
 * the admin's config only (an unsigned request never activates anyone). The requested peers neither
 * in the mesh nor reported failed are activated now with admin-signed calls, as add-coordinators and add-nodes
 * would (the admin key was just written); wg0.conf and admin.json learn them.
 */
async function activateTheRest(o: ActivateOptions, cfg: AdminConfig, creds: grpc.ChannelCredentials, io: IO): Promise<NodeFailure[]> {
  const inMesh = new Set([...cfg.peers.filter((p) => p.role !== "admin").map((p) => `${p.publicIP}:${p.pubapiPort}`), ...cfg.failed.map((f) => f.endpoint)]);
  const coordinators = o.coordinators.filter((e) => !inMesh.has(e));
  const nodes = o.nodes.filter((e) => !inMesh.has(e));
  if (coordinators.length + nodes.length === 0) return [];
  io.err(`the Coordinator had committed this activation; activating the ${coordinators.length + nodes.length} requested peer(s) not in the mesh yet (admin-signed)`);
  const signer = await readAdminKey(o.outDir);
  const progress = new Progress(io);
  try {
    const failed: NodeFailure[] = [];
    if (coordinators.length > 0) {
      const res = await activateAdditionalCoordinators(o.coordinator, creds, signer, coordinators, (l) => progress.line(l));
      await rememberCoordinators(o.outDir, res.activated);
      await mergeAdminWGConfig(o.outDir, res.activated);
      failed.push(...res.failed);
    }
    if (nodes.length > 0) {
      const res = await activateAdditionalNodes(o.coordinator, creds, signer, nodes, (l) => progress.line(l));
      await mergeAdminWGConfig(o.outDir, res.activated);
      failed.push(...res.failed);
    }
    return failed;
  } finally {
    progress.end();
  }
}

/**
 * pendingFile keeps the admin's keys (0600) from before the first contact until admin.json is
 * written: an activation interrupted after the Coordinator's commit point is resumed with them.
 */
export const pendingFile = "activate.pending.json";

/** pendingKeys returns the keys an interrupted run kept in DIR/activate.pending.json, or makes and keeps new ones. */
async function pendingKeys(dir: string, io: IO): Promise<{ keys: { privateKey: string; publicKey: string }; admin: ReturnType<typeof generateAdminKey>; resumed: boolean }> {
  const path = join(dir, pendingFile);
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new Error(`${path}: ${err.code ?? "cannot read"}`);
  });
  if (text === undefined) {
    const keys = generateAdminKeyPair();
    const admin = generateAdminKey();
    await writeFileAtomic(path, `${JSON.stringify({ wgPrivateKey: keys.privateKey, adminKeySeed: admin.seed.toString("base64") })}\n`);
    return { keys, admin, resumed: false };
  }
  let wg: string;
  let seed: Buffer;
  try {
    const v = JSON.parse(text) as { wgPrivateKey?: unknown; adminKeySeed?: unknown };
    wg = checkKey(v.wgPrivateKey, "wgPrivateKey");
    seed = Buffer.from(typeof v.adminKeySeed === "string" ? v.adminKeySeed : "", "base64");
    if (seed.length !== 32) throw new Error("adminKeySeed: must be 32 bytes (base64)");
  } catch (err) {
    throw new Error(`${path}: not what an interrupted meshctl activate kept (${errorMessage(err)}); move it away to start over`, { cause: err });
  }
  io.err(`resuming an interrupted activation with the admin keys kept in ${path}`);
  return { keys: { privateKey: wg, publicKey: publicKeyOf(wg) }, admin: adminKeyOf(seed), resumed: true };
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

/**
 * checkOutDir refuses existing outputs, except while an earlier run's keys are kept (`pending`):
 * that run may have been stopped while it wrote them, and this one writes them again from the keys.
 */
async function checkOutDir(dir: string, pending: string): Promise<void> {
  const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (await exists(pending)) return;
  for (const p of [adminWGFileName, adminFileName, adminKeyFile].map((f) => join(dir, f))) {
    if (await exists(p)) throw new Error(`${p} already exists; move it away or choose another --out (nobody was contacted)`);
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
