import { createATLSChannelCredentials } from "../atls/client.js";
import { CoreError } from "../core/errors.js";
import { reportFailures } from "./retry.js";
import { activateAdditionalNodes } from "../pubapi/admin.js";
import { describeChange, mergeAdminWGConfig, readAdminWGConfig } from "./admin-config.js";
import { readAdminKey } from "./admin-key.js";
import { Progress } from "./progress.js";
import { list, required, UsageError, type Command } from "./command.js";
import { coordinatorEndpoints, tryCoordinators } from "./coordinators.js";
import { endpointFlag } from "./endpoint.js";
import { loadValidators } from "../attestation/validators.js";
import { measurementsFlag } from "./validators.js";

/** addNodes is `meshctl add-nodes`: the Coordinator activates more Nodes. */
export const addNodes: Command = {
  name: "add-nodes",
  summary: "ask the Coordinator to activate more Nodes",
  usage: `Usage: meshctl add-nodes [--coordinator ENDPOINT] --nodes ENDPOINT,... --measurements FILE [--admin-dir DIR] [--out DIR]

Verifies the Coordinator's attestation (aTLS) and asks it to activate each fresh peer in --nodes
(the Coordinator verifies each Node's attestation). The request is signed with the admin key
(admin.key in --admin-dir, written by meshctl activate) over a single-use challenge of the Coordinator. Progress goes to stderr. Peers that fail are
named; the others stay activated, and the command can be run again for the failed ones.
With --out, the activated Nodes are added to DIR/wg0.conf (the admin's own key and every other peer
kept); without it wg0.conf is not changed ('meshctl admin-config' rewrites it later from inside the VPN).

Options:
  --coordinator ENDPOINT   the Coordinator to ask first (HOST[:PORT], port 9000 by default); then
                           every Coordinator admin.json lists, until one answers
  --nodes LIST             comma-separated Node endpoints (IP[:PORT])
  --admin-dir DIR          the directory of admin.json and admin.key (default .)
  --out DIR                add the activated Nodes to DIR/wg0.conf (usually the --admin-dir)
  --measurements FILE      measurement policy for the Coordinator's attestation (required; get one
                           with meshctl measurements --from ENDPOINT)`,
  options: { coordinator: { type: "string" }, nodes: { type: "string" }, "admin-dir": { type: "string" }, measurements: { type: "string" }, out: { type: "string" } },
  run: async (v, positionals, io) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const adminDir = typeof v["admin-dir"] === "string" ? v["admin-dir"] : ".";
    const coordinators = await coordinatorEndpoints(v.coordinator, adminDir);
    const nodes = list(required(v, "nodes")).map((n, i) => endpointFlag(n, `--nodes[${i}]`));
    if (nodes.length === 0) throw new UsageError("--nodes is empty");
    const validators = await loadValidators(measurementsFlag(v));
    const admin = await readAdminKey(adminDir);
    const outDir = typeof v.out === "string" ? v.out : undefined;
    // Checked before anything is activated: a wg0.conf we could not rewrite fails now, not after.
    if (outDir !== undefined) await readAdminWGConfig(outDir);
    const creds = createATLSChannelCredentials(validators);
    const progress = new Progress(io);
    const res = await tryCoordinators(coordinators, io, (ep) => activateAdditionalNodes(ep, creds, admin, nodes, (l) => progress.line(l)))
      .catch((err: unknown) => {
        // The Coordinator went away mid-way (a crash, a reboot): some Nodes may be in the mesh already.
        if (err instanceof CoreError && err.code === "unavailable") {
          throw new CoreError("unavailable", `${err.message}; if the Coordinator stopped during the activation, some of the Nodes may be in the mesh already: 'meshctl status' shows which`, { cause: err });
        }
        throw err;
      })
      .finally(() => progress.end());
    for (const p of res.activated) io.out(`activated ${p.publicIP}:${p.pubapiPort} as ${p.vpnIP} (WireGuard key ${p.vpnPubKey}, port ${p.wgPort})`);
    if (outDir !== undefined && res.activated.length > 0) io.out(describeChange(outDir, await mergeAdminWGConfig(outDir, res.activated)));
    return reportFailures(io, "add-nodes", res.failed, nodes.length, "Node(s)", (eps) => `meshctl add-nodes --admin-dir ${adminDir} --nodes ${eps.join(",")}`);
  },
};
