// In-process mesh for integration tests: peers over real gRPC on loopback with aTLS, a fake VPN network.
import * as grpc from "@grpc/grpc-js";
import nacl from "tweetnacl";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Issuer, Validator } from "../../src/attestation/attestation.js";
import type { MeasurementPolicy } from "../../src/attestation/policy.js";
import type { Tpm } from "../../src/attestation/native.js";
import { openTPM } from "../../src/attestation/tpm-issuer.js";
import { TPMMarker } from "../../src/attestation/tpm-marker.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { createATLSChannelCredentials } from "../../src/atls/client.js";
import { createCallerVerifier } from "../../src/atls/caller-proof.js";
import type { InitMarker, MarkerState } from "../../src/core/marker.js";
import { createATLSServerCredentials } from "../../src/atls/server.js";
import type { HandshakeLimiter } from "../../src/atls/limiter.js";
import { systemClock } from "../../src/core/clock.js";
import { UnavailableError } from "../../src/core/errors.js";
import { createLogger, type Logger } from "../../src/shared/logger.js";
import { MeshPeer } from "../../src/core/mesh-peer.js";
import { NodeStateFile } from "../../src/core/node-state.js";
import { AuthenticatedNodeState } from "../../src/core/node-state-auth.js";
import { TPMKeySealer } from "../../src/attestation/tpm-seal.js";
import type { CoordinatorClient } from "../../src/core/remote.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import type { Store } from "../../src/core/store.js";
import { DeferredStore } from "../../src/core/store-members.js";
import { PubAPIClient } from "../../src/pubapi/client.js";
import { createPubAPIServer } from "../../src/pubapi/server.js";
import { VPNAPIClient } from "../../src/vpnapi/client.js";
import { createVPNAPIServer } from "../../src/vpnapi/server.js";
import { FakeDisk, FakeKeySealer, FakeMarker, FakeVPNNetwork, type FakeVPN } from "./fakes.js";
import { TestIssuer, TestValidator } from "./attestation-test.js";
import { createLUKSFile, fastPBKDF, type LUKSFile } from "./luks.js";
import { freePort } from "./ports.js";
import { startSwtpm, swtpmPolicy, type Swtpm } from "./swtpm.js";
import { LUKSDisk } from "../../src/diskencryption/luks-disk.js";
import type { StateDisk } from "../../src/core/disk.js";

/** TestPeer is one in-process peer. */
export interface TestPeer {
  name: string;
  endpoint: string;
  peer: MeshPeer;
  vpn: FakeVPN;
  disk: StateDisk | undefined;
  marker: CountingMarker;
  stateDir: string;
  logs: string[];
  /** hardware is what survives a restart: state dir, TPM, disk, WireGuard device, port. */
  hardware: Hardware;
  /** issuer is the peer's attestation issuer (its aTLS certificates and caller proofs). */
  issuer: Issuer;
  /** tpm is the peer's TPM connection (attestation "tpm" only), for tests that extend PCRs. */
  tpm: Tpm | undefined;
  /** stopSoftware stops the peer's processes-to-be (servers, store, TPM connection), keeping its hardware. */
  stopSoftware(): Promise<void>;
  stop(): Promise<void>;
}

/** Hardware is a test peer's machine: what a reboot keeps. */
export interface Hardware {
  name: string;
  stateDir: string;
  vpn: FakeVPN;
  port: number;
  disk: StateDisk | undefined;
  luks: LUKSFile | undefined;
  swtpm: Swtpm | undefined;
  fakeMarker: FakeMarker;
  /** fakeSealer seals the node-state key when there is no swtpm (attestation "test"). */
  fakeSealer: FakeKeySealer;
}

/** MeshOptions configure a TestMesh. */
export interface MeshOptions {
  /**
   * attestation picks the evidence: "tpm" (default) gives every peer its own swtpm, a TPM issuer and
   * the real PCR 11/12 marker; "test" uses the test-only issuer and a fake marker (no swtpm).
   */
  attestation?: "tpm" | "test";
  /** policy is the measurement policy of every validator (default: a fresh swtpm's, swtpmPolicy()). */
  policy?: MeasurementPolicy;
  updateIntervalMs?: number;
  /** withDisks gives every peer a state disk: true → a fake, "luks" → a real LUKS2 file through cryptsetup. */
  withDisks?: boolean | "luks";
  activationConcurrency?: number;
  /** vpnapiCaller maps a vpnapi connection (grpc-js peer string) to the caller's VPN IP; default: its source address. */
  vpnapiCaller?: (grpcPeer: string) => string | undefined;
  /** storeRefuseWritesReason makes every peer's memory store refuse writes (as meshd on an unencrypted state dir). */
  storeRefuseWritesReason?: string;
  /** sharedStore gives every peer one shared memory store (several Coordinators in one process). */
  sharedStore?: boolean;
  /** handshakeLimiter gives a peer's aTLS server its limiter (default: the server's own). */
  handshakeLimiter?: (peerName: string) => HandshakeLimiter;
}

/** TestMesh owns every peer, server and temp dir it makes; close() releases all of them. */
export class TestMesh {
  readonly net = new FakeVPNNetwork();
  readonly peers: TestPeer[] = [];
  /** vpnapi maps a Coordinator VPN IP to its loopback vpnapi address. */
  readonly vpnapi = new Map<string, string>();
  readonly logs: string[] = [];
  /**
   * admin is this mesh's admin signing key (Ed25519): send `admin.publicKey` at activation, sign
   * admin RPCs with it. Its clusterID (what meshctl reads from admin.json) is the cluster of the
   * first peer of this mesh that became a Coordinator; a test of several clusters passes its own.
   */
  readonly admin: { publicKey: Buffer; secretKey: Uint8Array; readonly clusterID: Buffer } = (() => {
    const kp = nacl.sign.keyPair();
    const mesh = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the getter below runs with another `this`
    return {
      publicKey: Buffer.from(kp.publicKey),
      secretKey: kp.secretKey,
      get clusterID(): Buffer {
        return mesh.#firstClusterID();
      },
    };
  })();
  readonly #o: MeshOptions;
  #root = "";
  /** #shared is the one store of a sharedStore mesh: a promise, so peers booting at once share it. */
  #shared: Promise<MemoryStore> | undefined;

  constructor(options: MeshOptions = {}) {
    this.#o = options;
  }

  #firstClusterID(): Buffer {
    for (const p of this.peers) {
      try {
        const rec = JSON.parse(readFileSync(join(p.hardware.stateDir, "node-state.json"), "utf8")) as { nodeState?: { role?: string; clusterID?: string } };
        if (rec.nodeState?.role === "coordinator" && rec.nodeState.clusterID) return Buffer.from(rec.nodeState.clusterID, "hex");
      } catch {
        // not activated (yet)
      }
    }
    return Buffer.alloc(32); // no Coordinator yet: a cluster ID no Coordinator has
  }

  /** validators returns the client-side validators of this mesh. */
  validators(): Validator[] {
    if (this.#o.attestation === "test") return [new TestValidator()];
    return [createTPMValidator(this.#o.policy ?? swtpmPolicy())];
  }

  /** credentials returns aTLS channel credentials (requireFresh for activation). */
  credentials(requireFresh: boolean): grpc.ChannelCredentials {
    return createATLSChannelCredentials(this.validators(), { requireFresh });
  }

  async startPeer(name: string, options: { port?: number } = {}): Promise<TestPeer> {
    if (!this.#root) this.#root = await mkdtemp(join(tmpdir(), "am-mesh-"));
    const hw: Hardware = {
      name,
      stateDir: await mkdtemp(join(this.#root, `${name}-`)),
      vpn: this.net.newDevice("127.0.0.1", 52000 + this.peers.length),
      port: options.port ?? (await freePort()),
      disk: undefined,
      luks: undefined,
      swtpm: undefined,
      fakeMarker: new FakeMarker(),
      fakeSealer: new FakeKeySealer(),
    };
    if (this.#o.withDisks === "luks") {
      hw.luks = await createLUKSFile({ sizeMiB: 20 });
      hw.disk = new LUKSDisk({ device: hw.luks.path, initialKeyFile: hw.luks.initialKeyFile, pbkdf: fastPBKDF });
    } else if (this.#o.withDisks) {
      hw.disk = new FakeDisk();
    }
    if (this.#o.attestation !== "test") hw.swtpm = await startSwtpm();
    const tp = await this.#boot(hw);
    this.peers.push(tp);
    return tp;
  }

  /**
   * restartPeer stops a peer's software and starts it again on the same state dir, disk and port.
   * With reboot, the TPM is powered off and on (PCRs reset) and the WireGuard device comes back empty.
   * With lockedState (a reboot with a block-device state volume) the peer starts with its state
   * locked: its store opens only once its disk key arrived (as meshd's embedded store on the volume).
   */
  async restartPeer(old: TestPeer, options: { reboot?: boolean; lockedState?: boolean } = {}): Promise<TestPeer> {
    await old.stopSoftware();
    const hw = old.hardware;
    if (options.reboot) {
      hw.vpn.peers = [];
      hw.vpn.vpnIP = undefined;
      if (hw.swtpm) {
        await hw.swtpm.powerOff();
        hw.swtpm = await startSwtpm({ stateDir: hw.swtpm.stateDir });
      } else {
        hw.fakeMarker.owner = undefined;
        hw.fakeMarker.cluster = undefined;
      }
    }
    const tp = await this.#boot(hw, options.lockedState ?? false);
    this.peers[this.peers.indexOf(old)] = tp;
    return tp;
  }

  async #boot(hw: Hardware, lockedState = false): Promise<TestPeer> {
    const logs: string[] = [];
    const logger: Logger = createLogger((l) => {
      logs.push(l);
      this.logs.push(l);
    }, { level: "debug", component: hw.name });
    let issuer: Issuer;
    let marker: CountingMarker;
    let closeAttestation = async (): Promise<void> => {};
    let tpm: Tpm | undefined;
    if (!hw.swtpm) {
      marker = new CountingMarker(hw.fakeMarker);
      issuer = markerAwareIssuer(hw.fakeMarker);
    } else {
      const tpmIssuer = await openTPM(hw.swtpm.tcti);
      issuer = tpmIssuer;
      tpm = tpmIssuer.tpm;
      marker = new CountingMarker(new TPMMarker(tpmIssuer.tpm));
      closeAttestation = () => tpmIssuer.close();
    }
    // Kept as a promise: `x ??= await open()` let peers booting concurrently each open their own
    // store on the file (the flake of "c3 lists 3 Coordinators": c3 followed a store nobody wrote).
    if (this.#o.sharedStore) this.#shared ??= MemoryStore.open({ file: join(this.#root, "shared-store.json") });
    const shared = await this.#shared;
    const openStore = async (): Promise<Store> =>
      shared
        ? { get: (k) => shared.get(k), list: (p) => shared.list(p), begin: () => shared.begin(), close: async () => {} }
        : MemoryStore.open({
            file: join(hw.stateDir, "store.json"),
            ...(this.#o.storeRefuseWritesReason ? { refuseWritesReason: this.#o.storeRefuseWritesReason } : {}),
          });
    const deferred = lockedState ? new DeferredStore() : undefined;
    const store: Store = deferred ?? (await openStore());
    const peerClient = new PubAPIClient({ validators: this.validators(), issuer });
    const vpnServers: grpc.Server[] = [];
    let peerRef: MeshPeer | undefined; // eslint-disable-line prefer-const -- set once the peer started
    let peer: MeshPeer;
    try {
      peer = await MeshPeer.start({
        publicIP: "127.0.0.1",
        pubapiPort: hw.port,
        wgPort: hw.vpn.port,
        vpn: hw.vpn,
        disk: hw.disk,
        marker,
        nodeState: new AuthenticatedNodeState(new NodeStateFile(join(hw.stateDir, "node-state.json")), tpm ? new TPMKeySealer(tpm) : hw.fakeSealer),
        store,
        peerClient,
        dialCoordinator: (ip) => this.#dial(hw.vpn, ip),
        callerVerifier: createCallerVerifier(this.validators()),
        updateIntervalMs: this.#o.updateIntervalMs ?? 200,
        ...(deferred ? { stateLocked: true, onStateUnlocked: async () => deferred.attach(await openStore()) } : {}),
        ...(this.#o.activationConcurrency ? { activationConcurrency: this.#o.activationConcurrency } : {}),
        clock: systemClock,
        logger,
        onCoordinator: async (vpnIP) => {
          const s = createVPNAPIServer(peerRef!, logger.child("vpnapi"), this.#o.vpnapiCaller ? { callerVPNIP: this.#o.vpnapiCaller } : {});
          const port = await bind(s, "127.0.0.1:0", grpc.ServerCredentials.createInsecure());
          vpnServers.push(s);
          this.vpnapi.set(vpnIP, `127.0.0.1:${port}`);
        },
      });
    } catch (err) {
      // A peer that refuses to start (e.g. its node state is not authentic) leaves nothing open.
      peerClient.close();
      await store.close();
      await closeAttestation();
      throw err;
    }
    peerRef = peer;
    const limiter = this.#o.handshakeLimiter?.(hw.name);
    const atls = createATLSServerCredentials(issuer, { logger, ...(limiter ? { limiter } : {}) });
    const pub = createPubAPIServer({ peer, logger: logger.child("pubapi"), connections: atls.connections });
    await bind(pub, `127.0.0.1:${hw.port}`, atls);
    await peer.resume();
    let stopped = false;
    const stopSoftware = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      peer.close();
      peerClient.close();
      for (const s of [pub, ...vpnServers]) s.forceShutdown();
      await store.close();
      await closeAttestation();
    };
    return {
      name: hw.name,
      endpoint: `127.0.0.1:${hw.port}`,
      peer,
      vpn: hw.vpn,
      disk: hw.disk,
      marker,
      stateDir: hw.stateDir,
      logs,
      hardware: hw,
      issuer,
      tpm,
      stopSoftware,
      stop: async () => {
        await stopSoftware();
        await hw.swtpm?.stop();
        await hw.luks?.cleanup();
      },
    };
  }

  /** #dial gives a Node a vpnapi client that works only while the fake VPN routes both ways. */
  #dial(from: FakeVPN, coordinatorVPNIP: string): CoordinatorClient {
    let inner: VPNAPIClient | undefined;
    const reach = (): VPNAPIClient => {
      const coord = this.net.devices.find((d) => d.vpnIP === coordinatorVPNIP);
      const there = coord ? this.net.route(from, coordinatorVPNIP) : `no device has ${coordinatorVPNIP}`;
      const back = coord && from.vpnIP ? this.net.route(coord, from.vpnIP) : "sender has no VPN IP";
      if (typeof there === "string" || typeof back === "string") {
        throw new UnavailableError(`fake VPN: ${typeof there === "string" ? there : typeof back === "string" ? back : "unreachable"}`);
      }
      const addr = this.vpnapi.get(coordinatorVPNIP);
      if (!addr) throw new UnavailableError(`fake VPN: no vpnapi at ${coordinatorVPNIP}`);
      inner ??= new VPNAPIClient(addr);
      return inner;
    };
    return {
      getUpdate: (v, ip) => Promise.resolve().then(() => reach().getUpdate(v, ip)),
      getDataKey: (id, len) => Promise.resolve().then(() => reach().getDataKey(id, len)),
      close: () => inner?.close(),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.stop().catch(() => {})));
    await (await this.#shared?.catch(() => undefined))?.close();
    if (this.#root) await rm(this.#root, { recursive: true, force: true });
  }
}

/** CountingMarker counts mark() calls of the marker it wraps (tests assert "marked once"). */
export class CountingMarker implements InitMarker {
  marks = 0;
  constructor(readonly inner: InitMarker) {}
  read(): Promise<MarkerState> {
    return this.inner.read();
  }
  async mark(ownerID: Uint8Array, clusterID: Uint8Array): Promise<void> {
    await this.inner.mark(ownerID, clusterID);
    this.marks++;
  }
}

/** markerAwareIssuer is the test issuer whose "fresh" flag follows the peer's (fake) TPM marker. */
function markerAwareIssuer(marker: FakeMarker): Issuer {
  const base = new TestIssuer();
  return {
    platform: base.platform,
    oid: base.oid,
    issue: async (nonce, userData) => new TestIssuer({ fresh: (await marker.read()).kind === "fresh" }).issue(nonce, userData),
  };
}

export { freePort } from "./ports.js";

/** bind binds a server and resolves with its port. */
export function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
}
