import type * as grpc from "@grpc/grpc-js";
import type { CallerContext } from "../core/caller.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { MeshPeer } from "../core/mesh-peer.js";
import type { WireActivateAsNodeRequest, WireActivateAsNodeResponse, WireCallerProof } from "./messages.js";
import { initialRequestFromWire, openActivationStream } from "./initial-request.js";

/**
 * serveActivateAsNode runs the Node side of the ActivateAsNode stream:
 * initial_request → state_disk_uuid → state_disk_key → node_vpn. Out-of-order or missing
 * messages fail with INVALID_ARGUMENT naming the expected message. `callerOf` binds the caller
 * proof of initial_request to the call's connection.
 */
export async function serveActivateAsNode(
  call: grpc.ServerDuplexStream<unknown, unknown>,
  peer: MeshPeer,
  timeoutMs: number,
  callerOf: (proof: WireCallerProof | null | undefined) => CallerContext,
): Promise<void> {
  const { reader, initial: r } = await openActivationStream<WireActivateAsNodeRequest>(call, "ActivateAsNode", timeoutMs);
  const write = (m: WireActivateAsNodeResponse): void => {
    call.write(m);
  };
  const reply = await peer.activateAsNode(
    callerOf(r.callerProof),
    initialRequestFromWire(r),
    {
      sendDiskUUID: async (uuid) => {
        write({ stateDiskUuid: uuid });
        const m = await reader.next("state_disk_key", timeoutMs);
        if (m.request !== "stateDiskKey" || m.stateDiskKey === undefined) {
          throw new InvalidArgumentError(`ActivateAsNode: expected state_disk_key, got ${m.request ?? "an empty message"}`);
        }
        return m.stateDiskKey;
      },
    },
  );
  write({ nodeVpn: { nodeVpnPubKey: Buffer.from(reply.vpnPubKey, "base64"), wgPort: reply.wgPort } });
  call.end();
}
