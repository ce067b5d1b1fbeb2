// Test-only fakes of the core's side-effect interfaces. Never imported from src/.
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from "node:crypto";
import nacl from "tweetnacl";
import type { StateDisk } from "../../src/core/disk.js";
import { PermissionDeniedError } from "../../src/core/errors.js";
import type { InitMarker, MarkerState } from "../../src/core/marker.js";
import type { KeySealer, SealedKey } from "../../src/core/sealer.js";
import type { VPN, VPNPeer } from "../../src/core/vpn.js";

/** FakeMarker is an in-memory InitMarker. */
export class FakeMarker implements InitMarker {
  owner: Buffer | undefined;
  cluster: Buffer | undefined;
  marks = 0;
  async read(): Promise<MarkerState> {
    if (!this.owner && !this.cluster) return { kind: "fresh" };
    if (this.owner && this.cluster) return { kind: "activated", ownerMeasurement: this.owner, clusterMeasurement: this.cluster };
    return { kind: "inconsistent", detail: "only one of owner/cluster is set" };
  }
  async mark(ownerID: Uint8Array, clusterID: Uint8Array): Promise<void> {
    this.marks++;
    this.owner = Buffer.from(ownerID);
    this.cluster = Buffer.from(clusterID);
  }
}

/**
 * FakeKeySealer is an in-memory KeySealer standing in for one TPM: sealed keys are AES-256-GCM under
 * this instance's own key (so another FakeKeySealer cannot open them), bound to `bootState`, which a
 * test changes to simulate boot PCRs that changed.
 */
export class FakeKeySealer implements KeySealer {
  readonly pcrs: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  bootState: Buffer = Buffer.alloc(32);
  readonly #key = randomBytes(32);
  async seal(secret: Uint8Array): Promise<SealedKey> {
    const iv = randomBytes(12);
    const pub = Buffer.concat([iv, createHash("sha256").update(this.bootState).digest()]);
    const c = createCipheriv("aes-256-gcm", this.#key, iv).setAAD(pub);
    const ct = Buffer.concat([c.update(secret), c.final(), c.getAuthTag()]);
    return { pcrs: [...this.pcrs], public: pub.toString("base64"), private: ct.toString("base64") };
  }
  async unseal(sealed: SealedKey): Promise<Buffer> {
    const pub = Buffer.from(sealed.public, "base64");
    const ct = Buffer.from(sealed.private, "base64");
    let secret: Buffer;
    try {
      const d = createDecipheriv("aes-256-gcm", this.#key, pub.subarray(0, 12)).setAAD(pub).setAuthTag(ct.subarray(-16));
      secret = Buffer.concat([d.update(ct.subarray(0, -16)), d.final()]);
    } catch (err) {
      throw new PermissionDeniedError('check "sealed by this TPM" failed (fake sealer)', { cause: err });
    }
    if (!pub.subarray(12).equals(createHash("sha256").update(this.bootState).digest())) {
      throw new PermissionDeniedError('check "boot PCRs unchanged" failed (fake sealer)');
    }
    return secret;
  }
}

/** FakeDisk is an in-memory StateDisk that remembers the passphrase. */
export class FakeDisk implements StateDisk {
  /** diskUUID is the LUKS UUID it reports; tests may set it (a host can write any UUID into a header). */
  diskUUID: string = randomUUID();
  passphrase: Buffer = randomBytes(32);
  failNextUpdate = false;
  async uuid(): Promise<string> {
    return this.diskUUID;
  }
  async updatePassphrase(key: Uint8Array): Promise<void> {
    if (this.failNextUpdate) {
      this.failNextUpdate = false;
      throw new Error("fake disk: luksChangeKey failed");
    }
    this.passphrase = Buffer.from(key);
  }
  async unlock(key: Uint8Array): Promise<void> {
    if (!this.passphrase.equals(Buffer.from(key))) throw new Error("fake disk: the key opens no keyslot");
  }
}

/** Packet is one delivered fake-VPN packet. */
export interface Packet {
  fromVPNIP: string;
  payload: string;
}

/**
 * FakeVPNNetwork connects FakeVPN devices the way WireGuard would: a packet crosses only when the
 * sender has a peer whose allowed IP is the destination and whose endpoint is the receiver's public
 * address with the receiver's key, and the receiver accepts the sender's key from its VPN IP.
 */
export class FakeVPNNetwork {
  readonly devices: FakeVPN[] = [];

  newDevice(publicIP: string, port: number): FakeVPN {
    const d = new FakeVPN(publicIP, port);
    this.devices.push(d);
    return d;
  }

  /** route returns the receiving device for a packet from `from` to dstVPNIP, or a reason it has none. */
  route(from: FakeVPN, dstVPNIP: string): FakeVPN | string {
    const p = from.peers.find((x) => x.vpnIP === dstVPNIP);
    if (!p) return `${from.vpnIP}: no peer for ${dstVPNIP}`;
    const to = this.devices.find((d) => d.publicIP === p.publicIP && d.port === (p.port ?? 51820) && d.pubKey === p.pubKey);
    if (!to) return `${from.vpnIP}: no device at ${p.publicIP}:${p.port ?? 51820} with the configured key`;
    if (to.vpnIP !== dstVPNIP) return `${dstVPNIP}: device has VPN IP ${to.vpnIP}`;
    const back = to.peers.find((x) => x.pubKey === from.pubKey);
    if (!back || back.vpnIP !== from.vpnIP) return `${dstVPNIP}: does not accept ${from.vpnIP} with its key`;
    return to;
  }

  /** send delivers payload or returns why it could not. */
  send(from: FakeVPN, dstVPNIP: string, payload: string): true | string {
    const to = this.route(from, dstVPNIP);
    if (typeof to === "string") return to;
    to.inbox.push({ fromVPNIP: from.vpnIP ?? "", payload });
    return true;
  }
}

/** FakeVPN is an in-memory WireGuard device on a FakeVPNNetwork. */
export class FakeVPN implements VPN {
  readonly publicIP: string;
  readonly port: number;
  /** pubKey is the device's WireGuard public key; tests may set it (a host-controlled Node can report any key). */
  pubKey: string;
  vpnIP: string | undefined;
  peers: VPNPeer[] = [];
  readonly inbox: Packet[] = [];
  writes = 0;
  repairs = 0;

  constructor(publicIP: string, port: number) {
    this.publicIP = publicIP;
    this.port = port;
    this.pubKey = Buffer.from(nacl.box.keyPair().publicKey).toString("base64");
  }
  async getPublicKey(): Promise<string> {
    return this.pubKey;
  }
  async setInterfaceIP(vpnIP: string): Promise<void> {
    this.vpnIP = vpnIP;
  }
  async updatePeers(peers: readonly VPNPeer[]): Promise<void> {
    const same =
      peers.length === this.peers.length &&
      peers.every((p) => this.peers.some((q) => q.pubKey === p.pubKey && q.vpnIP === p.vpnIP && q.publicIP === p.publicIP && q.port === p.port));
    if (same) return;
    this.writes++;
    this.peers = peers.map((p) => ({ ...p }));
  }

  async repairPeers(peers: readonly VPNPeer[]): Promise<void> {
    this.repairs++;
    await this.updatePeers(peers);
  }
}
