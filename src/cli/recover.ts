import { join } from "node:path";
import { deriveOwnerID } from "../core/keys.js";
import { recoverCoordinator } from "../pubapi/recover.js";
import { readMasterSecret } from "./activate.js";
import { adminFileName, readAdminFile } from "./admin-file.js";
import { required, UsageError, type Command } from "./command.js";
import { endpointFlag } from "./endpoint.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

/** recover is `meshctl recover`: the admin delivers a rebooted Coordinator's state-disk key. */
export const recover: Command = {
  name: "recover",
  summary: "deliver a rebooted Coordinator's state-disk key when no Coordinator is left to do it",
  usage: `Usage: meshctl recover --endpoint ENDPOINT --master-secret FILE --measurements FILE [--admin-dir DIR]

A Coordinator that rebooted finds its state disk locked: its master secret is inside. It asks the
other Coordinators for the disk key; when none is left (all rebooted, or it was the only one) it
waits for this command. meshctl:
  1. checks that the master secret belongs to the cluster of admin.json (its owner ID);
  2. verifies the peer's attestation (aTLS, --measurements) and that its TPM marker (PCRs 11 and 12)
     names admin.json's owner and cluster;
  3. asks which disk the peer waits for, derives that disk's key from the master secret locally and
     sends it over the same connection, signed with the cluster credential (derived from the secret).
The Coordinator unlocks its disk, starts its store again and serves; its Nodes re-join it. With
--store managed its etcd member serves only with a majority of the Coordinators' members: recover a
majority this way (one by one); the others then get their keys from them when they ask.

Options:
  --endpoint ENDPOINT      the rebooted Coordinator's pubapi (HOST[:PORT], port 9000 by default)
  --master-secret FILE     the master secret given to meshctl activate (its raw bytes)
  --measurements FILE      measurement policy for the peer's attestation (required)
  --admin-dir DIR          the directory of admin.json (default .)`,
  options: { endpoint: { type: "string" }, "master-secret": { type: "string" }, measurements: { type: "string" }, "admin-dir": { type: "string" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const endpoint = endpointFlag(required(v, "endpoint"), "--endpoint");
    const adminDir = typeof v["admin-dir"] === "string" ? v["admin-dir"] : ".";
    const { ownerID, clusterID } = await readClusterIDs(adminDir);
    const masterSecret = await readMasterSecret(required(v, "master-secret"), io);
    if (!deriveOwnerID(masterSecret).equals(ownerID)) {
      throw new Error(`master secret file ${String(v["master-secret"])}: it is not the secret of the cluster in ${join(adminDir, adminFileName)} (its owner ID differs); nothing was sent`);
    }
    const validators = await loadValidators(measurementsFlag(v));
    io.err(`verifying ${endpoint} (attestation and cluster marker) and delivering its state-disk key`);
    const { diskUUID } = await recoverCoordinator(endpoint, validators, { ownerID, clusterID, masterSecret });
    io.out(`delivered the key of state disk ${diskUUID} to ${endpoint}: it unlocks its disk and serves as a Coordinator again`);
    return 0;
  },
};

/** readClusterIDs reads ownerId and clusterId from DIR/admin.json. */
async function readClusterIDs(dir: string): Promise<{ ownerID: Buffer; clusterID: Buffer }> {
  const admin = await readAdminFile(dir, "meshctl recover reads the admin.json meshctl activate wrote: --admin-dir DIR");
  return { ownerID: admin.ownerID, clusterID: admin.clusterID };
}
