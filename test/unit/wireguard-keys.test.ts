import { requireOrSkip } from "../helpers/luks.js";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { WireGuardError } from "../../src/wireguard/errors.js";
import { findExecutable } from "../../src/wireguard/exec.js";
import { loadOrCreatePrivateKey } from "../../src/wireguard/key-file.js";
import { checkKey, clampPrivateKey, generateKeyPair, hexToKey, keyToHex, parseKey, publicKeyOf } from "../../src/wireguard/keys.js";

const wg = findExecutable("wg") ?? requireOrSkip("wg (wireguard-tools)");

describe("wireguard keys", () => {
  it("generates clamped private keys and matching public keys", () => {
    for (let i = 0; i < 20; i++) {
      const kp = generateKeyPair();
      const priv = parseKey(kp.privKey, "privKey");
      expect(priv[0] & 7).toBe(0);
      expect(priv[31] & 128).toBe(0);
      expect(priv[31] & 64).toBe(64);
      expect(publicKeyOf(kp.privKey)).toBe(kp.pubKey);
      expect(kp.pubKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    }
  });

  it("clamps like wg genkey", () => {
    expect([...clampPrivateKey(new Uint8Array(32).fill(0xff))].slice(0, 1)).toEqual([248]);
    expect(clampPrivateKey(new Uint8Array(32).fill(0xff))[31]).toBe(127);
    expect(clampPrivateKey(new Uint8Array(32))[31]).toBe(64);
  });

  const bad: Array<{ name: string; value: unknown; message: RegExp }> = [
    { name: "not a string", value: 42, message: /^peers\[0\]\.pubKey: must be a base64 string, got number$/ },
    { name: "empty", value: "", message: /^peers\[0\]\.pubKey: is empty/ },
    { name: "invalid base64 characters", value: "not*base64!", message: /^peers\[0\]\.pubKey: is not valid base64 \(11 characters\)/ },
    { name: "missing padding", value: Buffer.alloc(32, 1).toString("base64").slice(0, 43), message: /is not valid base64/ },
    { name: "16 bytes", value: Buffer.alloc(16, 1).toString("base64"), message: /^peers\[0\]\.pubKey: must decode to 32 bytes, got 16$/ },
    { name: "33 bytes", value: Buffer.alloc(33, 1).toString("base64"), message: /must decode to 32 bytes, got 33$/ },
    { name: "non-canonical padding bits", value: `${Buffer.alloc(32, 1).toString("base64").slice(0, 42)}R=`, message: /not canonical base64/ },
  ];
  for (const tc of bad) {
    it(`rejects a key that is ${tc.name}, naming the field`, () => {
      let caught: unknown;
      try {
        parseKey(tc.value, "peers[0].pubKey");
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(WireGuardError);
      expect((caught as WireGuardError).code).toBe("invalid-argument");
      expect((caught as Error).message).toMatch(tc.message);
    });
  }

  it("never puts the rejected value (maybe a private key) into the message", () => {
    const secret = `${generateKeyPair().privKey.slice(0, 40)}AAAA=`; // 45 chars: wrong length
    expect(() => parseKey(secret, "privKey")).toThrow(WireGuardError);
    try {
      parseKey(secret, "privKey");
    } catch (err) {
      expect((err as Error).message).not.toContain(secret.slice(0, 20));
    }
  });

  it("converts between base64 and the hex of the UAPI protocol", () => {
    const k = generateKeyPair().pubKey;
    expect(keyToHex(k)).toMatch(/^[0-9a-f]{64}$/);
    expect(hexToKey(keyToHex(k))).toBe(k);
    expect(() => hexToKey("abc", "public_key")).toThrow(/^public_key: must be 64 hex characters, got 3$/);
    expect(checkKey(` ${k}\n`, "k")).toBe(k);
  });
});

describe.skipIf(!wg)(`wireguard keys interop with wg(8)${wg ? "" : " — skipped: wg not installed"}`, () => {
  it("our private key → `wg pubkey` equals our public key", async () => {
    for (let i = 0; i < 5; i++) {
      const kp = generateKeyPair();
      const { stdout } = await execa("wg", ["pubkey"], { input: `${kp.privKey}\n` });
      expect(stdout.trim()).toBe(kp.pubKey);
    }
  });

  it("`wg genkey` → our public key equals `wg pubkey`", async () => {
    for (let i = 0; i < 5; i++) {
      const priv = (await execa("wg", ["genkey"])).stdout.trim();
      const theirs = (await execa("wg", ["pubkey"], { input: `${priv}\n` })).stdout.trim();
      expect(publicKeyOf(priv)).toBe(theirs);
    }
  });
});

describe("wireguard private key file", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tmp = async () => {
    const d = await mkdtemp(join(tmpdir(), "am-wgkey-"));
    dirs.push(d);
    return d;
  };

  it("generates a key with mode 0600 when absent and keeps it across restarts", async () => {
    const path = join(await tmp(), "state", "wg.key");
    const first = await loadOrCreatePrivateKey(path);
    expect(first.created).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const again = await loadOrCreatePrivateKey(path);
    expect(again.created).toBe(false);
    expect(Buffer.from(again.privateKey).equals(Buffer.from(first.privateKey))).toBe(true);
    expect((await readFile(path, "utf8")).trim()).toBe(Buffer.from(first.privateKey).toString("base64"));
  });

  it("reads a `wg genkey` file and tightens a group/world-readable mode to 0600", async () => {
    const path = join(await tmp(), "wg.key");
    const kp = generateKeyPair();
    await writeFile(path, `${kp.privKey}\n`);
    await chmod(path, 0o644);
    const loaded = await loadOrCreatePrivateKey(path);
    expect(loaded.tightened).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(Buffer.from(loaded.privateKey).toString("base64")).toBe(kp.privKey);
  });

  it("concurrent first starts agree on one key", async () => {
    const path = join(await tmp(), "wg.key");
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreatePrivateKey(path)));
    const texts = new Set(keys.map((k) => Buffer.from(k.privateKey).toString("base64")));
    expect(texts.size).toBe(1);
  });

  it("refuses a corrupt key file, naming the file but not its content", async () => {
    const path = join(await tmp(), "wg.key");
    await writeFile(path, "garbage-that-is-secret\n", { mode: 0o600 });
    await expect(loadOrCreatePrivateKey(path)).rejects.toThrow(new RegExp(`^private key file ${path}: is not valid base64`));
    await expect(loadOrCreatePrivateKey(path)).rejects.not.toThrow(/garbage/);
  });
});
