import { InvalidArgumentError } from "../core/errors.js";
import type { PubAPIHandlers } from "./messages.js";
import { openActivationStream, type ActivationServing } from "./initial-request.js";

/**
 * serveActivateAsNode runs the Node side of the ActivateAsNode stream:
 * initial_request → state_disk_uuid → state_disk_key → node_vpn. Out-of-order or missing
 * messages fail with INVALID_ARGUMENT naming the expected message. `callerOf` binds the caller
 * proof of initial_request to the call's connection.
 */
export async function serveActivateAsNode(
  call: Parameters<PubAPIHandlers["ActivateAsNode"]>[0],
  { peer, timeoutMs, callerOf }: ActivationServing,
): Promise<void> {
  const { reader, request, caller, write } = await openActivationStream(call, "ActivateAsNode", timeoutMs, callerOf);
  const reply = await peer.activateAsNode(caller, request, {
    sendDiskUUID: async (uuid) => {
      write({ stateDiskUuid: uuid });
      const m = await reader.next("state_disk_key", timeoutMs);
      if (m.request !== "stateDiskKey" || m.stateDiskKey === undefined) {
        throw new InvalidArgumentError(`ActivateAsNode: expected state_disk_key, got ${m.request ?? "an empty message"}`);
      }
      return m.stateDiskKey;
    },
  });
  write({ nodeVpn: { nodeVpnPubKey: Buffer.from(reply.vpnPubKey, "base64"), wgPort: reply.wgPort } });
  call.end();
}
