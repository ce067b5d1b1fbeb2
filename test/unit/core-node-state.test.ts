import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermissionDeniedError, UnavailableError } from "../../src/core/errors.js";
import { MirroredNodeState, NodeStateFile, type NodeState, type NodeStateRecord } from "../../src/core/node-state.js";
import { AuthenticatedNodeState, nodeStateTag } from "../../src/core/node-state-auth.js";
import type { KeySealer } from "../../src/core/sealer.js";
import { FakeKeySealer } from "../helpers/fakes.js";
import { caught } from "../helpers/wait.js";

const state: NodeState = {
  role: "node",
  vpnIP: "10.118.0.12",
  ownerID: "ab".repeat(32),
  clusterID: "cd".repeat(32),
  coordinatorVPNIPs: ["10.118.0.1"],
  coordinatorEndpoints: ["192.0.2.1:9000"],
  coordinatorPeers: [{ role: "coordinator", publicIP: "192.0.2.1", vpnIP: "10.118.0.1", vpnPubKey: Buffer.alloc(32, 1).toString("base64"), wgPort: 51820, pubapiPort: 9000 }],
};

const readRecord = async (path: string): Promise<NodeStateRecord> => JSON.parse(await readFile(path, "utf8")) as NodeStateRecord;
const writeRecord = (path: string, r: unknown): Promise<void> => writeFile(path, JSON.stringify(r));

describe("node state", () => {
  let dir: string;
  let n = 0;
  const file = (): string => join(dir, `s${n++}.json`);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "am-nodestate-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("an authenticated state round-trips through a file with mode 0600, also for a new store instance", async () => {
    const path = file();
    const sealer = new FakeKeySealer();
    const s = new AuthenticatedNodeState(new NodeStateFile(path), sealer);
    expect(await s.load()).toBeUndefined();
    await s.save(state);
    expect(await s.load()).toEqual(state);
    expect(await new AuthenticatedNodeState(new NodeStateFile(path), sealer).load()).toEqual(state);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const r = await readRecord(path);
    expect(r.nodeState).toEqual(state);
    expect(r.sealedKey.pcrs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(r.tag).toMatch(/^[0-9a-f]{64}$/);
  });

  it("a torn write (truncated file) is refused naming the file and the last good copy it kept; nothing is overwritten, and that copy loads", async () => {
    const path = file();
    const sealer = new FakeKeySealer();
    const s = new AuthenticatedNodeState(new NodeStateFile(path), sealer);
    await s.save(state);
    await s.save({ ...state, coordinatorEndpoints: ["192.0.2.9:9000"] });
    const whole = await readFile(path, "utf8");
    await writeFile(path, whole.slice(0, whole.length / 2));
    const err = await caught(new AuthenticatedNodeState(new NodeStateFile(path), sealer).load());
    expect(err.message).toContain(`node state: ${path} is corrupt`);
    expect(err.message).toContain(`the copy it replaced is ${path}.prev`);
    expect(await readFile(path, "utf8")).toBe(whole.slice(0, whole.length / 2));
    expect(await new AuthenticatedNodeState(new NodeStateFile(`${path}.prev`), sealer).load()).toEqual(state);
    const fresh = file();
    await writeFile(fresh, "{");
    expect((await caught(new NodeStateFile(fresh).load())).message).toContain("there is no earlier copy");
  });

  it("a state rewritten by the host is refused, naming the tag check (regression: unauthenticated node state)", async () => {
    const path = file();
    const sealer = new FakeKeySealer();
    await new AuthenticatedNodeState(new NodeStateFile(path), sealer).save(state);
    const r = await readRecord(path);
    await writeRecord(path, { ...r, nodeState: { ...state, coordinatorEndpoints: ["203.0.113.66:9000"] } });
    const err = await caught(new AuthenticatedNodeState(new NodeStateFile(path), sealer).load());
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toMatch(/HMAC tag in .* does not match its contents/);
  });

  it("a record or tag taken from another peer is refused", async () => {
    const mine = new FakeKeySealer();
    const theirs = new FakeKeySealer();
    const [minePath, theirPath] = [file(), file()];
    await new AuthenticatedNodeState(new NodeStateFile(minePath), mine).save(state);
    await new AuthenticatedNodeState(new NodeStateFile(theirPath), theirs).save({ ...state, clusterID: "ee".repeat(32) });
    const their = await readRecord(theirPath);
    const own = await readRecord(minePath);
    await writeRecord(minePath, their);
    expect((await caught(new AuthenticatedNodeState(new NodeStateFile(minePath), mine).load())).message).toMatch(/check "sealed by this TPM" failed/);
    await writeRecord(minePath, { ...own, nodeState: their.nodeState, tag: their.tag });
    expect((await caught(new AuthenticatedNodeState(new NodeStateFile(minePath), mine).load())).message).toMatch(/HMAC tag/);
  });

  it("changed boot PCRs are refused", async () => {
    const path = file();
    const sealer = new FakeKeySealer();
    await new AuthenticatedNodeState(new NodeStateFile(path), sealer).save(state);
    sealer.bootState = Buffer.alloc(32, 7);
    const err = await caught(new AuthenticatedNodeState(new NodeStateFile(path), sealer).load());
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toMatch(/boot PCRs unchanged/);
  });

  it("a key sealed to other PCRs than the sealer's is refused", async () => {
    const path = file();
    const sealer = new FakeKeySealer();
    await new AuthenticatedNodeState(new NodeStateFile(path), sealer).save(state);
    const r = await readRecord(path);
    await writeRecord(path, { ...r, sealedKey: { ...r.sealedKey, pcrs: [0] } });
    expect((await caught(new AuthenticatedNodeState(new NodeStateFile(path), sealer).load())).message).toMatch(/sealed to PCRs 0, but this peer seals to PCRs 0,1,2/);
  });

  it("a TPM that cannot unseal fails the load with its own error, never falling back to the stored copy", async () => {
    const path = file();
    await new AuthenticatedNodeState(new NodeStateFile(path), new FakeKeySealer()).save(state);
    const down: KeySealer = { pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], seal: () => Promise.reject(new Error("unused")), unseal: () => Promise.reject(new UnavailableError("TPM not reachable")) };
    await expect(new AuthenticatedNodeState(new NodeStateFile(path), down).load()).rejects.toThrow(UnavailableError);
  });

  it("a sealer bound to the marker PCRs is refused", () => {
    const bad: KeySealer = { pcrs: [0, 11], seal: () => Promise.reject(new Error("unused")), unseal: () => Promise.reject(new Error("unused")) };
    expect(() => new AuthenticatedNodeState(new NodeStateFile(file()), bad)).toThrow(/PCR 11 or 12/);
  });

  it("the tag covers every field: changing any one changes it", () => {
    const key = Buffer.alloc(32, 3);
    const sealedKey = { pcrs: [0], public: "AAAA", private: "BBBB" };
    const base = nodeStateTag(key, state, sealedKey);
    const variants: NodeState[] = [
      { ...state, role: "coordinator" },
      { ...state, vpnIP: "10.118.0.13" },
      { ...state, ownerID: "ac".repeat(32) },
      { ...state, clusterID: "ce".repeat(32) },
      { ...state, coordinatorVPNIPs: ["10.118.0.2"] },
      { ...state, coordinatorEndpoints: ["192.0.2.2:9000"] },
      { ...state, coordinatorPeers: [{ ...state.coordinatorPeers[0], wgPort: 51821 }] },
    ];
    for (const v of variants) expect(nodeStateTag(key, v, sealedKey)).not.toBe(base);
    expect(nodeStateTag(key, state, { ...sealedKey, public: "AAAB" })).not.toBe(base);
    expect(nodeStateTag(Buffer.alloc(32, 4), state, sealedKey)).not.toBe(base);
  });

  it("a mirrored store accepts an untouched public copy and refuses a rewritten one (regression: unauthenticated LUKS2 token)", async () => {
    const sealer = new FakeKeySealer();
    const bootstrap = new NodeStateFile(file());
    const inner = new NodeStateFile(file());
    const m = new AuthenticatedNodeState(new MirroredNodeState(bootstrap, inner), sealer);
    await m.save(state);
    const fresh = new AuthenticatedNodeState(new MirroredNodeState(bootstrap, inner), sealer);
    const loaded = (await fresh.load())!;
    expect(await fresh.verified(loaded)).toEqual(state);
    // The inner copy differs (an older, also authentic record): refused after unlock.
    const older = new NodeStateFile(file());
    await new AuthenticatedNodeState(older, sealer).save({ ...state, vpnIP: "10.118.0.99" });
    await inner.save((await older.load())!);
    const again = new AuthenticatedNodeState(new MirroredNodeState(bootstrap, inner), sealer);
    await expect(again.verified((await again.load())!)).rejects.toThrow(/differs from the one inside the state disk/);
  });

  it("verified refuses a state that is not the authenticated one", async () => {
    const sealer = new FakeKeySealer();
    const s = new AuthenticatedNodeState(new MirroredNodeState(new NodeStateFile(file()), new NodeStateFile(file())), sealer);
    await expect(s.verified(state)).rejects.toThrow(/was not loaded and authenticated/);
    await s.save(state);
    await expect(s.verified({ ...state, vpnIP: "10.118.0.50" })).rejects.toThrow(/not the one authenticated/);
  });
});
