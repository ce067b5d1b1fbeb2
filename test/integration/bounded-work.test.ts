import * as grpc from "@grpc/grpc-js";
import { connect as netConnect } from "node:net";
import { connect } from "node:tls";
import nacl from "tweetnacl";
import { afterEach, describe, expect, it } from "vitest";
import { HandshakeLimiter } from "../../src/atls/limiter.js";
import { newNonce } from "../../src/atls/nonce.js";
import { createATLSServerCredentials } from "../../src/atls/server.js";
import { createLogger } from "../../src/shared/logger.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator, getState } from "../../src/pubapi/admin.js";
import { createPubAPIServer } from "../../src/pubapi/server.js";
import { TestIssuer } from "../helpers/attestation-test.js";
import { TestMesh } from "../helpers/mesh.js";
import { until } from "../helpers/wait.js";

const secret = Buffer.from("bounded work test master secret!");

/** handshake opens one raw TLS connection with a well-formed nonce from `localAddress`; resolves "ok" or "refused". */
function handshake(port: number, localAddress: string): Promise<"ok" | "refused"> {
  return new Promise((resolve) => {
    const tcp = netConnect({ host: "127.0.0.1", port, localAddress });
    tcp.once("error", () => resolve("refused"));
    const s = connect({ socket: tcp, servername: newNonce().servername, rejectUnauthorized: false, ALPNProtocols: ["h2"] });
    s.once("secureConnect", () => {
      s.destroy();
      resolve("ok");
    });
    s.once("error", () => resolve("refused"));
  });
}

/** flood keeps `width` handshakes from `localAddress` in flight until stop() and counts the outcomes. */
function flood(port: number, localAddress: string, width: number): { stop: () => Promise<{ ok: number; refused: number }> } {
  let running = true;
  const counts = { ok: 0, refused: 0 };
  const loops = Array.from({ length: width }, async () => {
    while (running) counts[await handshake(port, localAddress)]++;
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return counts;
    },
  };
}

describe("bounded work per unauthenticated request", () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it("a flood of aTLS handshakes on one peer (swtpm quotes) while an activation still completes", async () => {
    const limiters = new Map<string, HandshakeLimiter>();
    mesh = new TestMesh({
      handshakeLimiter: (name) => {
        const l = new HandshakeLimiter({ maxConcurrent: 2, maxQueued: 8, maxPerSource: 3 });
        limiters.set(name, l);
        return l;
      },
    });
    const coord = await mesh.startPeer("coord");
    const nodes = [await mesh.startPeer("node1"), await mesh.startPeer("node2")];
    // The flooder is one host (127.0.0.2) hammering the Coordinator and a Node with ClientHellos.
    const floods = [flood(Number(coord.endpoint.split(":")[1]), "127.0.0.2", 24), flood(Number(nodes[0].endpoint.split(":")[1]), "127.0.0.2", 24)];
    await until("the flood is refused as busy", () => (limiters.get("coord")?.stats.refused ?? 0) > 20);
    const adminVPNPubKey = Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
    const cfg = await activateAsCoordinator(coord.endpoint, mesh.credentials(true), { adminVPNPubKey, adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: nodes.map((n) => n.endpoint), coordinatorEndpoints: [] }, () => {});
    expect(cfg.failed).toEqual([]);
    await until("the Nodes join", () => nodes.every((n) => n.peer.state === PeerState.IsNode), 20_000);
    const [onCoord, onNode] = await Promise.all(floods.map((f) => f.stop()));
    for (const [name, counts] of [["coord", onCoord], ["node1", onNode]] as const) {
      const stats = limiters.get(name)!.stats;
      expect(stats.peakRunning, name).toBeLessThanOrEqual(2);
      expect(counts.refused, name).toBeGreaterThan(0);
      expect(stats.refused, name).toBeGreaterThanOrEqual(counts.refused);
    }
  }, 60_000);

  it("past the queue a handshake fails at once; the issuer never runs more than maxConcurrent at a time", async () => {
    let inFlight = 0;
    let peak = 0;
    let calls = 0;
    const slow = new (class extends TestIssuer {
      override async issue(nonce: Uint8Array, userData: Uint8Array): Promise<Uint8Array> {
        calls++;
        peak = Math.max(peak, ++inFlight);
        await new Promise((r) => setTimeout(r, 100));
        inFlight--;
        return super.issue(nonce, userData);
      }
    })();
    const limiter = new HandshakeLimiter({ maxConcurrent: 2, maxQueued: 2, maxPerSource: 100 });
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", createATLSServerCredentials(slow, { limiter }), (err, p) => (err ? reject(err) : resolve(p))),
    );
    try {
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 40 }, () => handshake(port, "127.0.0.1")));
      expect(results.filter((r) => r === "ok")).toHaveLength(4);
      expect(peak).toBe(2);
      expect(calls).toBe(4);
      expect(limiter.stats.refused).toBe(36);
      // 36 refused at once: the whole batch takes two issuer rounds, not 20.
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      server.forceShutdown();
    }
  });

  it("pubapi calls per caller address are bounded: RESOURCE_EXHAUSTED past the bucket, served again after refill", async () => {
    mesh = new TestMesh({ attestation: "test" });
    const coord = await mesh.startPeer("coord");
    const atls = createATLSServerCredentials(new TestIssuer());
    const lines: string[] = [];
    const server = createPubAPIServer({ peer: coord.peer, logger: createLogger((l) => lines.push(l)), connections: atls.connections, callerRateLimit: { burst: 5, perSecond: 10 } });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", atls, (err, p) => (err ? reject(err) : resolve(p))),
    );
    try {
      const endpoint = `127.0.0.1:${port}`;
      const creds = mesh.credentials(false);
      const results = await Promise.all(Array.from({ length: 12 }, () => getState(endpoint, creds).then(() => "ok", (e: { code?: string; message: string }) => e.code ?? e.message)));
      expect(results.filter((r) => r === "ok").length).toBeLessThanOrEqual(6);
      expect(results).toContain("resource-exhausted");
      // The audit log sees the calls the rate limit refused before any handler ran.
      const refused = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true && l.code === "RESOURCE_EXHAUSTED");
      expect(refused.length).toBe(results.filter((r) => r === "resource-exhausted").length);
      expect(refused[0]).toMatchObject({ method: "GetState", caller: "unauthenticated 127.0.0.1" });
      expect(refused[0].refusal).toMatch(/rate limit: too many calls from 127\.0\.0\.1/);
      await until("a token is back", async () => (await getState(endpoint, creds).then(() => true, () => false)), 3000);
    } finally {
      server.forceShutdown();
    }
  });
});
