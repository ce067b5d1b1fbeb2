import { InvalidArgumentError } from "../core/errors.js";
import { checkPeerRecord, type PeerRecord } from "../core/peer.js";

/** WirePeer is the proto Peer message as the code receives it (generated from pubapi.proto). */
export type { Peer__Output as WirePeer } from "../gen/attestedmesh/pubapi/Peer.js";
import type { Peer__Output as WirePeer } from "../gen/attestedmesh/pubapi/Peer.js";

/** peerToWire converts a PeerRecord into a proto Peer. */
export function peerToWire(p: PeerRecord): WirePeer {
  return { role: p.role, publicIp: p.publicIP, vpnIp: p.vpnIP, vpnPubKey: Buffer.from(p.vpnPubKey, "base64"), wgPort: p.wgPort, pubapiPort: p.pubapiPort };
}

/** peerFromWire validates a proto Peer from the network; errors name the field. */
export function peerFromWire(w: WirePeer | undefined | null, field: string): PeerRecord {
  if (!w) throw new InvalidArgumentError(`${field}: missing`);
  return checkPeerRecord(
    {
      role: w.role,
      publicIP: w.publicIp,
      vpnIP: w.vpnIp,
      vpnPubKey: keyFromWire(w.vpnPubKey, `${field}.vpnPubKey`),
      wgPort: w.wgPort,
      pubapiPort: w.pubapiPort,
    },
    field,
  );
}

/** keyFromWire checks a 32-byte WireGuard key from the network and returns it as base64. */
export function keyFromWire(b: Buffer | undefined, field: string): string {
  if (!Buffer.isBuffer(b) || b.length !== 32) throw new InvalidArgumentError(`${field}: must be 32 bytes, got ${b?.length ?? 0}`);
  return b.toString("base64");
}
