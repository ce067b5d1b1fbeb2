/**
 * The bootstrap token and LUKSTokenNodeState on real LUKS2 files (real cryptsetup, no key and no
 * device-mapper needed): round trips, atomic replacement, survival across the key rotation,
 * the size limit, and corrupt tokens.
 */
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import type { NodeState, NodeStateRecord } from "../../src/core/node-state.js";
import {
  bootstrapTokenType,
  LUKSTokenNodeState,
  maxBootstrapTokenBytes,
  readBootstrapToken,
  updateBootstrapToken,
  writeBootstrapToken,
} from "../../src/diskencryption/bootstrap-token.js";
import { CorruptMetadataError, LUKSVersionError, NotLUKSError, TokenTooLargeError } from "../../src/diskencryption/errors.js";
import { LUKSDisk } from "../../src/diskencryption/luks-disk.js";
import { createLUKSFile, createPlainFile, fastPBKDF, haveCryptsetup, opensWithKeyFile, trackTempDirs, caughtDiskError } from "../helpers/luks.js";

const track = trackTempDirs();

const cs = (args: string[], input?: string) => execa("cryptsetup", args, { ...(input === undefined ? { stdin: "ignore" as const } : { input }), reject: false });

/** tokensOf returns the header's tokens as cryptsetup dumps them (independent of the code under test). */
async function tokensOf(path: string): Promise<Record<string, { type: string; keyslots: unknown[]; [k: string]: unknown }>> {
  return JSON.parse((await cs(["luksDump", "--dump-json-metadata", path])).stdout).tokens;
}
async function epochOf(path: string): Promise<number> {
  return Number(/^Epoch:\s*(\d+)/m.exec((await cs(["luksDump", path])).stdout)?.[1]);
}
async function importRaw(path: string, token: object, id?: number): Promise<void> {
  const r = await cs(["token", "import", ...(id === undefined ? [] : ["--token-id", String(id)]), "--json-file", "-", path], JSON.stringify(token));
  expect(r.exitCode, r.stderr).toBe(0);
}

const nodeState: NodeState = {
  role: "node",
  vpnIP: "10.118.0.11",
  ownerID: "ab".repeat(32),
  clusterID: "cd".repeat(32),
  coordinatorVPNIPs: ["10.118.0.1"],
  coordinatorEndpoints: ["192.0.2.1:9000"],
  coordinatorPeers: [{ role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: `${"A".repeat(43)}=`, wgPort: 51820, pubapiPort: 9000 }],
};

/** record is a stored node state; its sealed key and tag are only checked for shape here (node-state-auth tests check them). */
const record: NodeStateRecord = { nodeState, sealedKey: { pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], public: "AAAB", private: "AAAC" }, tag: "ef".repeat(32) };

const caught = caughtDiskError;

describe.skipIf(!haveCryptsetup())("bootstrap token in a LUKS2 header (real cryptsetup)", () => {
  it("a LUKS2 file without the token reads as undefined", async () => {
    const f = await track(createLUKSFile());
    expect(await readBootstrapToken(f.path)).toBeUndefined();
  });

  it("write then read round-trips JSON without any key; cryptsetup sees one unbound token of our type", async () => {
    const f = await track(createLUKSFile());
    const data = { hello: "wörld", path: "/a/b", n: [1, 2.5, null], nested: { t: true } };
    await writeBootstrapToken(f.path, data);
    expect(await readBootstrapToken(f.path)).toEqual(data);
    const tokens = Object.values(await tokensOf(f.path));
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ type: bootstrapTokenType, keyslots: [], version: 1, data });
  });

  it("replacing is one header commit (epoch +1), keeps the token ID, and leaves other tools' tokens alone", async () => {
    const f = await track(createLUKSFile());
    await importRaw(f.path, { type: "other-tool", keyslots: [], note: "someone else's" }, 0);
    await writeBootstrapToken(f.path, { v: 1 });
    const idBefore = Object.entries(await tokensOf(f.path)).find(([, t]) => t.type === bootstrapTokenType)![0];
    const epoch = await epochOf(f.path);
    await writeBootstrapToken(f.path, { v: 2 });
    expect(await epochOf(f.path)).toBe(epoch + 1);
    const tokens = await tokensOf(f.path);
    expect(Object.keys(tokens).sort()).toEqual(["0", idBefore].sort());
    expect(tokens[idBefore]).toMatchObject({ data: { v: 2 } });
    expect(tokens["0"]).toMatchObject({ type: "other-tool", note: "someone else's" });
    expect(await readBootstrapToken(f.path)).toEqual({ v: 2 });
  });

  it("concurrent updates in one process lose no field", async () => {
    const f = await track(createLUKSFile());
    await Promise.all(["a", "b", "c", "d"].map((k) => updateBootstrapToken(f.path, (cur) => ({ ...(cur as object), [k]: true }))));
    expect(await readBootstrapToken(f.path)).toEqual({ a: true, b: true, c: true, d: true });
  });

  it("survives the key rotation (luksAddKey + luksKillSlot), and a max-size token leaves room for it", async () => {
    const f = await track(createLUKSFile());
    const filler = "x".repeat(maxBootstrapTokenBytes - 200);
    await writeBootstrapToken(f.path, { filler });
    const newKey = randomBytes(32);
    await new LUKSDisk({ device: f.path, initialKeyFile: f.initialKeyFile, pbkdf: fastPBKDF }).updatePassphrase(newKey);
    expect(await opensWithKeyFile(f.path, newKey)).toBe(true);
    expect(await opensWithKeyFile(f.path, f.initialKey)).toBe(false);
    expect(await readBootstrapToken(f.path)).toEqual({ filler });
  });

  it("an oversize payload is refused with TokenTooLargeError and the old token stays", async () => {
    const f = await track(createLUKSFile());
    await writeBootstrapToken(f.path, { v: "old" });
    const err = await caught(writeBootstrapToken(f.path, { big: "y".repeat(maxBootstrapTokenBytes) }));
    expect(err).toBeInstanceOf(TokenTooLargeError);
    expect(err.message).toMatch(new RegExp(`at most ${maxBootstrapTokenBytes} fit`));
    // json-c stores "/" as "\/": the limit counts that
    await expect(writeBootstrapToken(f.path, { slashes: "/".repeat(maxBootstrapTokenBytes / 2) })).rejects.toBeInstanceOf(TokenTooLargeError);
    expect(await readBootstrapToken(f.path)).toEqual({ v: "old" });
  });

  it("refuses undefined data, a plain file (NotLUKSError) and LUKS1 (LUKSVersionError)", async () => {
    const f = await track(createLUKSFile());
    await expect(writeBootstrapToken(f.path, undefined)).rejects.toThrow(TypeError);
    const plain = await track(createPlainFile());
    expect(await caught(readBootstrapToken(plain.path))).toBeInstanceOf(NotLUKSError);
    const l1 = await track(createLUKSFile({ type: "luks1" }));
    expect(await caught(writeBootstrapToken(l1.path, {}))).toBeInstanceOf(LUKSVersionError);
  });

  const corrupt: { name: string; token: object; message: RegExp }[] = [
    { name: "an unknown version", token: { type: bootstrapTokenType, keyslots: [], version: 2, data: {} }, message: /version 2, expected 1/ },
    { name: "no data", token: { type: bootstrapTokenType, keyslots: [], version: 1 }, message: /no data field/ },
    { name: "a binding to a keyslot", token: { type: bootstrapTokenType, keyslots: ["0"], version: 1, data: {} }, message: /bound to keyslots/ },
  ];
  for (const tc of corrupt) {
    it(`a token with ${tc.name} → CorruptMetadataError; writeBootstrapToken repairs it`, async () => {
      const f = await track(createLUKSFile());
      await importRaw(f.path, tc.token);
      const err = await caught(readBootstrapToken(f.path));
      expect(err).toBeInstanceOf(CorruptMetadataError);
      expect(err.message).toMatch(tc.message);
      await expect(updateBootstrapToken(f.path, () => ({}))).rejects.toBeInstanceOf(CorruptMetadataError);
      await writeBootstrapToken(f.path, { fixed: true });
      expect(await readBootstrapToken(f.path)).toEqual({ fixed: true });
    });
  }

  it("two tokens of our type → CorruptMetadataError naming both IDs", async () => {
    const f = await track(createLUKSFile());
    for (const id of [3, 7]) await importRaw(f.path, { type: bootstrapTokenType, keyslots: [], version: 1, data: {} }, id);
    expect((await caught(readBootstrapToken(f.path))).message).toMatch(/2 attested-mesh-bootstrap tokens \(IDs 3, 7\)/);
  });
});

describe.skipIf(!haveCryptsetup())("LUKSTokenNodeState (real cryptsetup)", () => {
  it("round-trips the node state record, readable without a key, and keeps other payload fields", async () => {
    const f = await track(createLUKSFile());
    const ns = new LUKSTokenNodeState(f.path);
    expect(ns.path).toBe(`${f.path} (LUKS2 token)`);
    expect(await ns.load()).toBeUndefined();
    await writeBootstrapToken(f.path, { other: 1 });
    expect(await ns.load()).toBeUndefined();
    await ns.save(record);
    expect(await ns.load()).toEqual(record);
    expect(await readBootstrapToken(f.path)).toEqual({ other: 1, ...record });
    await ns.save({ ...record, nodeState: { ...nodeState, vpnIP: "10.118.0.12" } });
    expect((await new LUKSTokenNodeState(f.path).load())?.nodeState.vpnIP).toBe("10.118.0.12");
  });

  it("the state survives the disk's key rotation", async () => {
    const f = await track(createLUKSFile());
    await new LUKSTokenNodeState(f.path).save(record);
    await new LUKSDisk({ device: f.path, initialKeyFile: f.initialKeyFile, pbkdf: fastPBKDF }).updatePassphrase(randomBytes(32));
    expect(await new LUKSTokenNodeState(f.path).load()).toEqual(record);
  });

  const bad: { name: string; payload: unknown; message: RegExp }[] = [
    { name: "a bad role", payload: { ...record, nodeState: { ...nodeState, role: "king" } }, message: /role/ },
    { name: "a bad VPN IP", payload: { ...record, nodeState: { ...nodeState, vpnIP: "10.118.0" } }, message: /vpnIP: not an IP/ },
    { name: "an upper-case owner ID", payload: { ...record, nodeState: { ...nodeState, ownerID: "AB".repeat(32) } }, message: /ownerID/ },
    { name: "a broken peer key", payload: { ...record, nodeState: { ...nodeState, coordinatorPeers: [{ ...nodeState.coordinatorPeers[0], vpnPubKey: "x" }] } }, message: /vpnPubKey/ },
    { name: "no tag", payload: { nodeState, sealedKey: record.sealedKey }, message: /tag: must be 64/ },
    { name: "no sealed key", payload: { nodeState, tag: record.tag }, message: /sealedKey: not an object/ },
    { name: "a sealed key for PCR 24", payload: { ...record, sealedKey: { ...record.sealedKey, pcrs: [24] } }, message: /sealedKey.pcrs/ },
    { name: "a payload that is not an object", payload: "just a string", message: /not an object/ },
  ];
  for (const tc of bad) {
    it(`a token with ${tc.name} → CorruptMetadataError naming the device and the field`, async () => {
      const f = await track(createLUKSFile());
      await writeBootstrapToken(f.path, tc.payload);
      const err = await caught(new LUKSTokenNodeState(f.path).load());
      expect(err).toBeInstanceOf(CorruptMetadataError);
      expect(err.message).toContain(`node state: ${f.path} (LUKS2 token) is corrupt`);
      expect(err.message).toMatch(tc.message);
    });
  }

  it("save refuses an invalid state and writes nothing", async () => {
    const f = await track(createLUKSFile());
    await expect(new LUKSTokenNodeState(f.path).save({ ...record, nodeState: { ...nodeState, clusterID: "nope" } })).rejects.toThrow(/refusing to save/);
    expect(await readBootstrapToken(f.path)).toBeUndefined();
  });
});
