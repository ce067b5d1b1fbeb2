import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage, FailedPreconditionError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import { MemoryStore } from "../store/store-memory.js";
import type { Store } from "../core/store.js";
import type { MeshdConfig } from "./flags.js";

/**
 * openStore opens the Coordinator store. The memory store persists in the state dir: unless that is
 * the encrypted state volume, it refuses every write (a Coordinator's first write comes before its
 * master secret) unless --insecure-state-dir accepts a plaintext secret, with a warning.
 */
export async function openStore(config: MeshdConfig, encryptedStateDir: boolean, logger: Logger): Promise<Store> {
  if (config.store.kind === "memory") {
    const file = join(config.stateDir, "store.json");
    if (encryptedStateDir) return MemoryStore.open({ file });
    if (config.insecureStateDir) {
      logger.warn("--insecure-state-dir: a Coordinator keeps its master secret in plaintext where the host can read it (demo only)", { file });
      return MemoryStore.open({ file });
    }
    const refuseWritesReason =
      `the state dir ${config.stateDir} is not an encrypted volume, so a Coordinator's master secret would be readable by the host; ` +
      "give --disk a block device (meshd maps its encrypted volume at the state dir) or, for a demo, --insecure-state-dir";
    logger.info("the state dir is not encrypted: this peer can be a Node but refuses to be a Coordinator (see --insecure-state-dir)");
    return MemoryStore.open({ file, refuseWritesReason });
  }
  if (config.store.kind === "managed") throw new FailedPreconditionError("openStore: --store managed is opened by its ManagedEtcd");
  const files = config.store.tls;
  const tls = files && {
    ca: await readPEM(files.caFile, "--etcd-ca"),
    ...(files.certFile ? { cert: await readPEM(files.certFile, "--etcd-cert") } : {}),
    ...(files.keyFile ? { key: await readPEM(files.keyFile, "--etcd-key") } : {}),
  };
  // Loaded only when used: the etcd3 client is ~40% of meshd's module-load time (a TCG guest feels it).
  const { EtcdStore } = await import("../store/store-etcd.js");
  return EtcdStore.open({ endpoints: config.store.endpoints, ...(tls ? { tls } : {}), logger });
}

async function readPEM(file: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new FailedPreconditionError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : errorMessage(err)}`, { cause: err });
  }
}
