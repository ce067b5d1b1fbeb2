/**
 * ActivateAsAdditionalCoordinator over the pubapi, both ends:
 * initial_request → info → secrets → member_started → promoted → done.
 */
import type { Issuer, Validator } from "../attestation/attestation.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { CoordinatorJoinHandlers, NodeActivationRequest } from "../core/remote.js";
import { keyFromWire } from "../rpc/peer-wire.js";
import { ProvenChannel } from "./connect.js";
import type { PubAPIHandlers } from "./messages.js";
import { openActivationStream, runActivationCall, type ActivationServing } from "./initial-request.js";

/** maxStoreJoinBytes bounds CoordinatorSecrets.store_join (an etcd initial-cluster string). */
const maxStoreJoinBytes = 4096;

/**
 * runActivateAsAdditionalCoordinator is the activating Coordinator's side: over a fresh aTLS channel
 * (the peer's evidence must verify and show a fresh peer) with a caller proof, it drives the
 * exchange through `handlers`. `timeoutMs` bounds the whole exchange.
 */
export async function runActivateAsAdditionalCoordinator(
  endpoint: string,
  validators: readonly Validator[],
  issuer: Issuer,
  req: NodeActivationRequest,
  handlers: CoordinatorJoinHandlers,
  timeoutMs: number,
): Promise<void> {
  await runActivationCall(
    new ProvenChannel(endpoint, validators, issuer, true),
    req,
    timeoutMs,
    (client, options) => client.ActivateAsAdditionalCoordinator(options),
    async (call, reader) => {
      const m1 = await reader.next("info", timeoutMs);
      if (m1.response !== "info" || !m1.info) throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator: expected info, got ${m1.response ?? "an empty message"}`);
      const wgPort = m1.info.wgPort;
      if (!Number.isInteger(wgPort) || wgPort < 1 || wgPort > 65535) throw new InvalidArgumentError(`info.wgPort: must be 1-65535, got ${wgPort}`);
      const secrets = await handlers.secrets({ diskUUID: m1.info.stateDiskUuid ?? "", vpnPubKey: keyFromWire(m1.info.vpnPubKey, "info.vpnPubKey"), wgPort });
      call.write({ secrets: { stateDiskKey: Buffer.from(secrets.diskKey), masterSecret: Buffer.from(secrets.masterSecret), storeJoin: secrets.storeJoin } });
      const m2 = await reader.next("member_started", timeoutMs);
      if (m2.response !== "memberStarted") throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator: expected member_started, got ${m2.response ?? "an empty message"}`);
      await handlers.promote();
      call.write({ promoted: true });
      const m3 = await reader.next("done", timeoutMs);
      if (m3.response !== "done") throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator: expected done, got ${m3.response ?? "an empty message"}`);
    },
  );
}

/**
 * serveActivateAsAdditionalCoordinator is the fresh peer's side; out-of-order or missing messages
 * fail with INVALID_ARGUMENT naming the expected one. `callerOf` binds initial_request's caller
 * proof to the call's connection.
 */
export async function serveActivateAsAdditionalCoordinator(
  call: Parameters<PubAPIHandlers["ActivateAsAdditionalCoordinator"]>[0],
  { peer, timeoutMs, callerOf }: ActivationServing,
): Promise<void> {
  const { reader, request, caller, write } = await openActivationStream(call, "ActivateAsAdditionalCoordinator", timeoutMs, callerOf);
  await peer.activateAsAdditionalCoordinator(caller, request, {
    sendInfo: async (info) => {
      write({ info: { stateDiskUuid: info.diskUUID, vpnPubKey: Buffer.from(info.vpnPubKey, "base64"), wgPort: info.wgPort } });
      const m = await reader.next("secrets", timeoutMs);
      if (m.request !== "secrets" || !m.secrets) throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator: expected secrets, got ${m.request ?? "an empty message"}`);
      if (Buffer.byteLength(m.secrets.storeJoin) > maxStoreJoinBytes) throw new InvalidArgumentError(`secrets.storeJoin: at most ${maxStoreJoinBytes} bytes`);
      return { diskKey: m.secrets.stateDiskKey, masterSecret: m.secrets.masterSecret, storeJoin: m.secrets.storeJoin };
    },
    memberStarted: async () => {
      write({ memberStarted: true });
      const m = await reader.next("promoted", timeoutMs);
      if (m.request !== "promoted") throw new InvalidArgumentError(`ActivateAsAdditionalCoordinator: expected promoted, got ${m.request ?? "an empty message"}`);
    },
  });
  write({ done: { nodeVpnPubKey: Buffer.from(await peer.getVPNPublicKey(), "base64"), wgPort: 0 } });
  call.end();
}
