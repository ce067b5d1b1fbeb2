import { createATLSChannelCredentials } from "../atls/client.js";
import { reportFailures } from "./retry.js";
import { activateAdditionalCoordinators } from "../pubapi/admin.js";
import { readAdminKey } from "./admin-key.js";
import { Progress } from "./progress.js";
import { list, required, UsageError, type Command } from "./command.js";
import { coordinatorEndpoints, rememberCoordinators, tryCoordinators } from "./coordinators.js";
import { endpointFlag } from "./endpoint.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

/** addCoordinators is `meshctl add-coordinators`: a Coordinator activates further Coordinators (admin-signed). */
export const addCoordinators: Command = {
  name: "add-coordinators",
  summary: "ask a Coordinator to activate further Coordinators",
  usage: `Usage: meshctl add-coordinators --coordinators ENDPOINT,... --measurements FILE [--coordinator ENDPOINT] [--admin-dir DIR]

Asks an activated Coordinator (the first of --coordinator and those admin.json lists that answers),
signed with the admin key, to activate each fresh peer in --coordinators as a further Coordinator,
one at a time: the peer's attestation is verified, it gets a VPN IP from the Coordinator pool, its
own disk key, the cluster's secrets and a member of the shared etcd store. admin.json learns the new
Coordinators (admin commands try each). Add the printed peers to wg0.conf.

Options:
  --coordinators LIST      comma-separated endpoints of the fresh peers (IP[:PORT])
  --coordinator ENDPOINT   an activated Coordinator to ask first (default: those in admin.json)
  --admin-dir DIR          the directory of admin.json and admin.key (default .)
  --measurements FILE      measurement policy (required; meshctl measurements --from ENDPOINT)`,
  options: { coordinator: { type: "string" }, coordinators: { type: "string" }, "admin-dir": { type: "string" }, measurements: { type: "string" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const fresh = list(required(v, "coordinators")).map((n, i) => endpointFlag(n, `--coordinators[${i}]`));
    if (fresh.length === 0) throw new UsageError("--coordinators is empty");
    const adminDir = typeof v["admin-dir"] === "string" ? v["admin-dir"] : ".";
    const targets = await coordinatorEndpoints(v.coordinator, adminDir);
    const validators = await loadValidators(measurementsFlag(v));
    const admin = await readAdminKey(adminDir);
    const creds = createATLSChannelCredentials(validators);
    const progress = new Progress(io);
    const res = await tryCoordinators(targets, io, (ep) => activateAdditionalCoordinators(ep, creds, admin, fresh, (l) => progress.line(l))).finally(() => progress.end());
    await rememberCoordinators(adminDir, res.activated);
    for (const p of res.activated) io.out(`activated Coordinator ${p.publicIP}:${p.pubapiPort} as ${p.vpnIP} (WireGuard key ${p.vpnPubKey}, port ${p.wgPort})`);
    return reportFailures(io, "add-coordinators", res.failed, fresh.length, "Coordinator(s)", (eps) => `meshctl add-coordinators --admin-dir ${adminDir} --coordinators ${eps.join(",")}`);
  },
};
