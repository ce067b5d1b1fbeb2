// Activation and update-poll figures, measured side by side in one process (in-process peers,
// real gRPC and aTLS on loopback, test attestation, fake VPN network).
import * as grpc from "@grpc/grpc-js";
import nacl from "tweetnacl";
import { activateAsCoordinator } from "../src/pubapi/admin.js";
import { VPNAPIClient } from "../src/vpnapi/client.js";
import { bind, TestMesh } from "../test/helpers/mesh.js";

const secret = Buffer.from("bench master secret, 32 bytes!!!");

async function activationMs(nodes: number): Promise<number> {
  const mesh = new TestMesh({ updateIntervalMs: 60_000 });
  try {
    const coord = await mesh.startPeer("coord");
    const peers = [];
    for (let i = 0; i < nodes; i++) peers.push(await mesh.startPeer(`n${i}`));
    const t0 = performance.now();
    const cfg = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: nacl.sign.keyPair().publicKey, masterSecret: secret, nodeEndpoints: peers.map((p) => p.endpoint), coordinatorEndpoints: [] },
      () => {},
    );
    const ms = performance.now() - t0;
    if (cfg.failed.length > 0) throw new Error(`bench: ${cfg.failed.length} activations failed: ${cfg.failed[0]!.error}`);
    return ms;
  } finally {
    await mesh.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** benchActivation returns activation time for 100 Nodes vs 1 Node (medians of runs, same process). */
export async function benchActivation(): Promise<Record<string, number>> {
  await activationMs(1); // warm up module loading and crypto
  const one: number[] = [];
  const hundred: number[] = [];
  for (let i = 0; i < 3; i++) {
    one.push(await activationMs(1));
    hundred.push(await activationMs(100));
  }
  return {
    activate_1_node_ms: Math.round(median(one)),
    activate_100_nodes_ms: Math.round(median(hundred)),
    activate_100_vs_1_ratio: +(median(hundred) / median(one)).toFixed(2),
  };
}

/** benchPolls returns no-change GetUpdate polls/s vs empty unary calls/s on the same kind of channel. */
export async function benchPolls(): Promise<Record<string, number>> {
  const mesh = new TestMesh({ updateIntervalMs: 60_000 });
  const empty = new grpc.Server();
  try {
    const coord = await mesh.startPeer("coord");
    const node = await mesh.startPeer("node");
    await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: Buffer.from(nacl.box.keyPair().publicKey).toString("base64"), adminPubKey: nacl.sign.keyPair().publicKey, masterSecret: secret, nodeEndpoints: [node.endpoint], coordinatorEndpoints: [] },
      () => {},
    );
    const addr = mesh.vpnapi.get("10.118.0.1")!;
    const client = new VPNAPIClient(addr);
    const version = (await client.getUpdate(0, "10.118.0.12")).resourceVersion;

    const svc = { Empty: { path: "/bench.Empty/Empty", requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } };
    empty.addService(svc, { Empty: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)) });
    const port = await bind(empty, "127.0.0.1:0", grpc.ServerCredentials.createInsecure());
    const Ctor = grpc.makeGenericClientConstructor(svc, "Empty");
    const emptyClient = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as { Empty(b: Buffer, cb: (e: Error | null) => void): void; close(): void };
    const emptyCall = () => new Promise<void>((res, rej) => emptyClient.Empty(Buffer.alloc(0), (e) => (e ? rej(e) : res())));
    const poll = async () => {
      const u = await client.getUpdate(version, "10.118.0.12");
      if (u.peers !== undefined) throw new Error("bench: unexpected change");
    };
    const rate = async (fn: () => Promise<void>, n: number) => {
      for (let i = 0; i < 200; i++) await fn();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await fn();
      return n / ((performance.now() - t0) / 1000);
    };
    const polls: number[] = [];
    const empties: number[] = [];
    for (let i = 0; i < 3; i++) {
      polls.push(await rate(poll, 2000));
      empties.push(await rate(emptyCall, 2000));
    }
    client.close();
    emptyClient.close();
    return {
      getupdate_nochange_per_s: Math.round(median(polls)),
      empty_unary_per_s: Math.round(median(empties)),
      getupdate_vs_empty_unary_ratio: +(median(polls) / median(empties)).toFixed(2),
    };
  } finally {
    empty.forceShutdown();
    await mesh.close();
  }
}
