import { createATLSChannelCredentials } from "../atls/client.js";
import { checkIP } from "../core/validate.js";
import { removeNode as removeNodeRPC } from "../pubapi/admin.js";
import { readAdminKey } from "./admin-key.js";
import { required, UsageError, type Command } from "./command.js";
import { coordinatorEndpoints, tryCoordinators } from "./coordinators.js";
import { loadValidators, measurementsFlag } from "./validators.js";

/** removeNode is `meshctl remove-node`: the Coordinator takes a Node out of the mesh (admin-signed). */
export const removeNode: Command = {
  name: "remove-node",
  summary: "take a Node out of the mesh (admin-signed)",
  usage: `Usage: meshctl remove-node [--coordinator ENDPOINT] --vpn-ip IP --measurements FILE [--admin-dir DIR]

Verifies the Coordinator's attestation (aTLS) and asks it, signed with the admin key, to take the
Node with VPN address --vpn-ip out of the peer set: its VPN IP is freed, its state-disk UUID is
forgotten (its disk key is never released again) and every device drops it at its next update.

Options:
  --coordinator ENDPOINT   the Coordinator to ask first (HOST[:PORT], port 9000 by default); then
                           every Coordinator admin.json lists, until one answers
  --vpn-ip IP              the Node's VPN address (10.118.x.y)
  --admin-dir DIR          the directory of admin.json and admin.key (default .)
  --measurements FILE      measurement policy for the Coordinator's attestation (required; get one
                           with meshctl measurements --from ENDPOINT)`,
  options: { coordinator: { type: "string" }, "vpn-ip": { type: "string" }, "admin-dir": { type: "string" }, measurements: { type: "string" } },
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
    const version = await tryCoordinators(coordinators, io, (ep) => removeNodeRPC(ep, creds, admin, vpnIP));
    io.out(`removed ${vpnIP}; the peer set is now at resource version ${version}`);
    return 0;
  },
};
