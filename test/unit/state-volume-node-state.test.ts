/**
 * The node-state checks (src/shared/shapes.ts) that both the file store (NodeStateFile) and the
 * LUKS2 token store (LUKSTokenNodeState) apply: one implementation, so what one store accepts the
 * other accepts, and every corruption both refuse.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StateDisk } from "../../src/core/disk.js";
import { NodeStateFile, type NodeState, type NodeStateRecordStore } from "../../src/core/node-state.js";
import { LUKSTokenNodeState } from "../../src/diskencryption/bootstrap-token.js";
import { checkNodeState, checkNodeStateRecord } from "../../src/shared/shapes.js";
import type { StateVolume } from "../../src/diskencryption/state-volume.js";
import { makeTempDir, type TempDir } from "../helpers/luks.js";

// Compile-time: the token store is a NodeStateRecordStore, the volume a StateDisk.
const _shape: (s: LUKSTokenNodeState) => NodeStateRecordStore = (s) => s;
const _disk: (v: StateVolume) => StateDisk = (v) => v;
void _shape;
void _disk;

const key = (c: string): string => `${c.repeat(43)}=`;
const valid: NodeState = {
  role: "node",
  vpnIP: "10.118.0.11",
  ownerID: "0f".repeat(32),
  clusterID: "a1".repeat(32),
  coordinatorVPNIPs: ["10.118.0.1", "10.118.0.2"],
  coordinatorEndpoints: ["192.0.2.1:9000", "coord.example:9000"],
  coordinatorPeers: [
    { role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: key("A"), wgPort: 51820, pubapiPort: 9000 },
    { role: "coordinator", publicIP: "2001:db8::2", vpnIP: "10.118.0.2", vpnPubKey: key("E"), wgPort: 51820, pubapiPort: 9000 },
  ],
};
const peer0 = valid.coordinatorPeers[0];

const accepted: { name: string; state: unknown }[] = [
  { name: "a Node", state: valid },
  { name: "a Coordinator listing only itself", state: { ...valid, role: "coordinator", vpnIP: "10.118.0.1", coordinatorVPNIPs: ["10.118.0.1"], coordinatorEndpoints: [], coordinatorPeers: [] } },
  { name: "no coordinatorPeers field (older file)", state: { ...valid, coordinatorPeers: undefined } },
  { name: "an admin peer without public IP", state: { ...valid, coordinatorPeers: [{ ...peer0, role: "admin", publicIP: "", wgPort: 0, pubapiPort: 0 }] } },
];

const refused: { name: string; state: unknown }[] = [
  { name: "null", state: null },
  { name: "an unknown role", state: { ...valid, role: "admin" } },
  { name: "a VPN IP that is not an IP", state: { ...valid, vpnIP: "10.118.0.256" } },
  { name: "a short owner ID", state: { ...valid, ownerID: "0f" } },
  { name: "an upper-case cluster ID", state: { ...valid, clusterID: "A1".repeat(32) } },
  { name: "coordinatorVPNIPs not an array", state: { ...valid, coordinatorVPNIPs: "10.118.0.1" } },
  { name: "coordinatorEndpoints missing", state: { ...valid, coordinatorEndpoints: undefined } },
  { name: "a peer with a bad role", state: { ...valid, coordinatorPeers: [{ ...peer0, role: "boss" }] } },
  { name: "a peer with a bad public IP", state: { ...valid, coordinatorPeers: [{ ...peer0, publicIP: "example.com" }] } },
  { name: "a peer with a short key", state: { ...valid, coordinatorPeers: [{ ...peer0, vpnPubKey: "AAAA" }] } },
  { name: "an endpoint of 300 characters", state: { ...valid, coordinatorEndpoints: [`${"h".repeat(295)}:9000`] } },
  { name: "a VPN IP list with a name", state: { ...valid, coordinatorVPNIPs: ["coordinator"] } },
  { name: "a peer with port 0", state: { ...valid, coordinatorPeers: [{ ...peer0, wgPort: 0 }] } },
  { name: "two peers with one VPN IP", state: { ...valid, coordinatorPeers: [peer0, { ...peer0, vpnPubKey: key("I") }] } },
  { name: "two peers with one key", state: { ...valid, coordinatorPeers: [peer0, { ...peer0, vpnIP: "10.118.0.3" }] } },
];

let tmp: TempDir;
beforeEach(async () => {
  tmp = await makeTempDir("am-ns-drift-");
});
afterEach(async () => tmp.cleanup());

const sealedKey = { pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], public: "AAAB", private: "AAAC" };
const tag = "0a".repeat(32);

async function fileLoad(state: unknown): Promise<NodeState | undefined> {
  const path = join(tmp.dir, "node-state.json");
  await writeFile(path, JSON.stringify({ nodeState: state, sealedKey, tag }));
  return (await new NodeStateFile(path).load())?.nodeState;
}

describe("checkNodeState, as NodeStateFile.load applies it", () => {
  for (const tc of accepted) {
    it(`accepts ${tc.name}`, async () => {
      const fromFile = await fileLoad(tc.state);
      expect(checkNodeState(tc.state)).toEqual(fromFile);
    });
  }
  for (const tc of refused) {
    it(`refuses ${tc.name}`, async () => {
      await expect(fileLoad(tc.state)).rejects.toThrow(/corrupt/);
      expect(() => checkNodeState(tc.state)).toThrow();
    });
  }

  it("checkNodeState returns a copy with only NodeState's fields", () => {
    const out = checkNodeState({ ...valid, extra: "dropped" });
    expect(out).toEqual(valid);
    expect(out).not.toHaveProperty("extra");
  });
});

const acceptedRecords: { name: string; record: unknown }[] = [
  { name: "a record", record: { nodeState: valid, sealedKey, tag } },
  { name: "a key sealed to one PCR", record: { nodeState: valid, sealedKey: { ...sealedKey, pcrs: [7] }, tag } },
];
const refusedRecords: { name: string; record: unknown }[] = [
  { name: "no tag", record: { nodeState: valid, sealedKey } },
  { name: "an upper-case tag", record: { nodeState: valid, sealedKey, tag: tag.toUpperCase() } },
  { name: "a short tag", record: { nodeState: valid, sealedKey, tag: "0a" } },
  { name: "no sealed key", record: { nodeState: valid, tag } },
  { name: "no PCRs", record: { nodeState: valid, sealedKey: { ...sealedKey, pcrs: [] }, tag } },
  { name: "PCR 24", record: { nodeState: valid, sealedKey: { ...sealedKey, pcrs: [24] }, tag } },
  { name: "a PCR twice", record: { nodeState: valid, sealedKey: { ...sealedKey, pcrs: [1, 1] }, tag } },
  { name: "a public blob that is not base64", record: { nodeState: valid, sealedKey: { ...sealedKey, public: "a b" }, tag } },
  { name: "a huge private blob", record: { nodeState: valid, sealedKey: { ...sealedKey, private: "A".repeat(2052) }, tag } },
  { name: "a bad node state", record: { nodeState: { ...valid, role: "admin" }, sealedKey, tag } },
];

describe("checkNodeStateRecord", () => {
  for (const tc of acceptedRecords) {
    it(`accepts ${tc.name}, keeping only the record's fields`, () => {
      expect(checkNodeStateRecord({ ...(tc.record as object), extra: 1 })).toEqual(tc.record);
    });
  }
  for (const tc of refusedRecords) {
    it(`refuses ${tc.name}`, () => {
      expect(() => checkNodeStateRecord(tc.record)).toThrow();
    });
  }
});

describe("LUKSTokenNodeState", () => {
  it("names its device as path and refuses an empty device", () => {
    expect(new LUKSTokenNodeState("/dev/vda").path).toBe("/dev/vda (LUKS2 token)");
    expect(() => new LUKSTokenNodeState("")).toThrow(TypeError);
  });
});
