// In-process fakes of the clients the core calls (PeerClient, CoordinatorClient): MeshPeers talk to
// each other by direct method calls, with real caller proofs (test documents bound to a fresh
// keying material per call, the cluster credential's signature) and the fake VPN's routing. No
// gRPC, no TLS, no sockets: unit tests drive activation, failure, re-join and disk-key delivery in
// milliseconds (CONVENTIONS.md "Core tested without gRPC"); the integration tier covers the wire.
import { randomBytes } from "node:crypto";
import type { Issuer } from "../../src/attestation/attestation.js";
import { createCallerVerifier, issueCallerDocument } from "../../src/atls/caller-proof.js";
import type { CallerContext } from "../../src/core/caller.js";
import { systemClock } from "../../src/core/clock.js";
import type { CoordinatorCredential } from "../../src/core/coordinator-auth.js";
import { FailedPreconditionError, UnavailableError } from "../../src/core/errors.js";
import { MeshPeer } from "../../src/core/mesh-peer.js";
import { AuthenticatedNodeState } from "../../src/core/node-state-auth.js";
import type { NodeStateRecord, NodeStateRecordStore } from "../../src/core/node-state.js";
import type { CoordinatorClient, PeerClient } from "../../src/core/remote.js";
import type { Store } from "../../src/core/store.js";
import { createLogger } from "../../src/shared/logger.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import { TestIssuer, TestValidator } from "./attestation-test.js";
import { FakeDisk, FakeKeySealer, FakeMarker, FakeVPNNetwork, type FakeVPN } from "./fakes.js";

/** MemoryRecordStore keeps a node-state record in memory (it survives a restart of the peer, like a file). */
class MemoryRecordStore implements NodeStateRecordStore {
  readonly path = "memory";
  #record: NodeStateRecord | undefined;
  async save(record: NodeStateRecord): Promise<void> {
    this.#record = structuredClone(record);
  }
  async load(): Promise<NodeStateRecord | undefined> {
    return this.#record && structuredClone(this.#record);
  }
}

/** InProcessHardware is what survives a peer's restart: its TPM (marker, sealer), disk, device, stored state. */
export interface InProcessHardware {
  name: string;
  endpoint: string;
  marker: FakeMarker;
  sealer: FakeKeySealer;
  disk: FakeDisk;
  vpn: FakeVPN;
  records: MemoryRecordStore;
  store: Store;
}

/** InProcessPeer is one running MeshPeer and its hardware. */
export interface InProcessPeer {
  hw: InProcessHardware;
  peer: MeshPeer;
}

/**
 * InProcessMesh starts MeshPeers on fake hardware that reach each other through in-process clients.
 * `down` endpoints refuse every call (UNAVAILABLE), as a peer whose host dropped it would. close()
 * stops every peer.
 */
export class InProcessMesh {
  readonly net = new FakeVPNNetwork();
  readonly logs: string[] = [];
  /** down holds endpoints that refuse every call. */
  readonly down = new Set<string>();
  readonly #peers = new Map<string, MeshPeer>();
  readonly #issuer: Issuer;
  #next = 1;

  constructor(private readonly o: { updateIntervalMs?: number } = {}) {
    this.#issuer = new TestIssuer();
  }

  /** hardware makes a new machine: fresh TPM, blank disk, a device at 198.51.100.N. */
  async hardware(name: string): Promise<InProcessHardware> {
    const n = this.#next++;
    return {
      name,
      endpoint: `198.51.100.${n}:9000`,
      marker: new FakeMarker(),
      sealer: new FakeKeySealer(),
      disk: new FakeDisk(),
      vpn: this.net.newDevice(`198.51.100.${n}`, 51820),
      records: new MemoryRecordStore(),
      store: await MemoryStore.open(),
    };
  }

  /** start boots a MeshPeer on `hw` (fresh, or restored from what hw keeps) and resumes it. */
  async start(hw: InProcessHardware): Promise<InProcessPeer> {
    const logger = createLogger((l) => this.logs.push(l), { level: "debug", component: hw.name });
    const [publicIP, port] = hw.endpoint.split(":");
    const peer = await MeshPeer.start({
      publicIP,
      pubapiPort: Number(port),
      wgPort: hw.vpn.port,
      vpn: hw.vpn,
      disk: hw.disk,
      marker: hw.marker,
      nodeState: new AuthenticatedNodeState(hw.records, hw.sealer),
      store: hw.store,
      ...(hw.store instanceof MemoryStore ? { discardUncommitted: () => (hw.store as MemoryStore).discardAll().then(() => {}) } : {}),
      peerClient: this.#client(),
      dialCoordinator: (ip) => this.#dial(hw.vpn, ip),
      callerVerifier: createCallerVerifier([new TestValidator()]),
      updateIntervalMs: this.o.updateIntervalMs ?? 50,
      clock: systemClock,
      logger,
    });
    this.#peers.set(hw.endpoint, peer);
    await peer.resume();
    return { hw, peer };
  }

  /** stop ends a peer's software (a crash or a reboot); its hardware stays for start(). */
  stop(p: InProcessPeer): void {
    p.peer.close();
    this.#peers.delete(p.hw.endpoint);
  }

  close(): void {
    for (const p of this.#peers.values()) p.close();
    this.#peers.clear();
  }

  #target(endpoint: string): MeshPeer {
    const p = this.down.has(endpoint) ? undefined : this.#peers.get(endpoint);
    if (!p) throw new UnavailableError(`in-process: nothing serves ${endpoint}`);
    return p;
  }

  /** #caller proves the caller on a new "connection": a test document bound to fresh keying material, signed by `credential` when given. */
  async #caller(credential: CoordinatorCredential | undefined): Promise<CallerContext> {
    const ekm = randomBytes(32);
    const { oid, document } = await issueCallerDocument(this.#issuer, ekm);
    return { ekm, proof: { oid, document, clusterSignature: credential ? credential.signConnection(ekm) : Buffer.alloc(0) } };
  }

  #client(): PeerClient {
    return {
      activateAsNode: async (endpoint, request, diskKey) => this.#target(endpoint).activateAsNode(await this.#caller(undefined), request, { sendDiskUUID: diskKey }),
      joinCluster: async (endpoint, coordinatorVPNIP, credential) => ({
        resourceVersion: await this.#target(endpoint).joinCluster(await this.#caller(credential), coordinatorVPNIP),
      }),
      triggerNodeUpdate: async (endpoint, credential) => void (await this.#target(endpoint).triggerNodeUpdate(await this.#caller(credential))),
      getPeerVPNPublicKey: async (endpoint) => this.#target(endpoint).getVPNPublicKey(),
      pushStateDiskKey: async (endpoint, uuid, key, credential) => this.#target(endpoint).receiveStateDiskKey(await this.#caller(credential), uuid, key),
      requestStateDiskKey: async (endpoint, uuid) => this.#target(endpoint).requestStateDiskKey(uuid),
      activateAsAdditionalCoordinator: () => Promise.reject(new FailedPreconditionError("in-process: additional Coordinators need the store members of the integration tier")),
    };
  }

  /** #dial gives a Node a vpnapi client that answers only while the fake VPN routes both ways. */
  #dial(from: FakeVPN, coordinatorVPNIP: string): CoordinatorClient {
    const reach = (): MeshPeer => {
      const coord = this.net.devices.find((d) => d.vpnIP === coordinatorVPNIP);
      const there = coord ? this.net.route(from, coordinatorVPNIP) : `no device has ${coordinatorVPNIP}`;
      const back = coord && from.vpnIP ? this.net.route(coord, from.vpnIP) : "sender has no VPN IP";
      if (typeof there === "string") throw new UnavailableError(`fake VPN: ${there}`);
      if (typeof back === "string") throw new UnavailableError(`fake VPN: ${back}`);
      const peer = [...this.#peers.values()].find((p) => p.coordinatorVPNIP === coordinatorVPNIP);
      if (!peer) throw new UnavailableError(`in-process: no Coordinator serves ${coordinatorVPNIP}`);
      return peer;
    };
    return {
      getUpdate: (v, ip) => Promise.resolve().then(() => reach().getUpdate(v, from.vpnIP ?? ip)),
      getDataKey: (id, len) => Promise.resolve().then(() => reach().getDataKey(id, len, from.vpnIP)),
      close: () => {},
    };
  }
}
