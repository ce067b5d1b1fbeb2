import { createATLSChannelCredentials } from "../atls/client.js";
import { errorMessage } from "../core/errors.js";
import { checkIP } from "../core/validate.js";
import { removePeer } from "../pubapi/admin.js";
import { readAdminKey } from "./admin-key.js";
import { required, UsageError, type Command } from "./command.js";
import { coordinatorEndpoints, forgetCoordinator, tryCoordinators } from "./coordinators.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

const options = { coordinator: { type: "string" }, "vpn-ip": { type: "string" }, "admin-dir": { type: "string" }, measurements: { type: "string" } } as const;

const commonOptions = `  --vpn-ip IP              the peer's VPN address (10.118.x.y)
  --admin-dir DIR          the directory of admin.json and admin.key (default .)
  --measurements FILE      measurement policy for the Coordinator's attestation (required; get one
                           with meshctl measurements --from ENDPOINT)`;

/** removeCommand builds `meshctl remove-node` and `meshctl remove-coordinator`: one admin-signed removal each. */
function removeCommand(kind: "node" | "coordinator"): Command {
  const method = kind === "node" ? "RemoveNode" : "RemoveCoordinator";
  const what = kind === "node" ? "a Node" : "a Coordinator";
  return {
    name: `remove-${kind}`,
    summary: `take ${what} out of the mesh (admin-signed)`,
    usage: `Usage: meshctl remove-${kind} [--coordinator ENDPOINT] --vpn-ip IP --measurements FILE [--admin-dir DIR]

Verifies the Coordinator's attestation (aTLS) and asks it, signed with the admin key, to take
${what} with VPN address --vpn-ip out of the peer set: its VPN IP is freed, its state-disk UUID is
retired (its disk key is never released again) and every device drops it at its next update.${
      kind === "coordinator"
        ? `
The Coordinator's etcd member is removed first (it no longer counts for the quorum), and its
endpoint is dropped from admin.json. A Coordinator does not remove itself: ask another one.`
        : ""
    }

Options:
  --coordinator ENDPOINT   the Coordinator to ask first (HOST[:PORT], port 9000 by default); then
                           every Coordinator admin.json lists, until one answers
${commonOptions}`,
    options,
    run: async (v, positionals, io) => {
      if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
      const adminDir = typeof v["admin-dir"] === "string" ? v["admin-dir"] : ".";
      const coordinators = await coordinatorEndpoints(v.coordinator, adminDir);
      const vpnIP = required(v, "vpn-ip");
      try {
        checkIP(vpnIP, "--vpn-ip");
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const admin = await readAdminKey(adminDir);
      const validators = await loadValidators(measurementsFlag(v));
      const creds = createATLSChannelCredentials(validators);
      // A Coordinator does not remove itself: the next one is asked then.
      const r = await tryCoordinators(coordinators, io, (ep) => removePeer(method, ep, creds, admin, vpnIP), (err) => /is this Coordinator; ask another/.test(errorMessage(err)));
      if (kind === "coordinator" && r.endpoint !== "") await forgetCoordinator(adminDir, r.endpoint);
      io.out(`removed ${vpnIP}${r.endpoint ? ` (${r.endpoint})` : ""}; the peer set is now at resource version ${r.resourceVersion}`);
      return 0;
    },
  };
}

/** removeNode is `meshctl remove-node`. */
export const removeNode: Command = removeCommand("node");

/** removeCoordinator is `meshctl remove-coordinator`. */
export const removeCoordinator: Command = removeCommand("coordinator");
