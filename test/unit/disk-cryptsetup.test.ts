import { describe, expect, it } from "vitest";
import {
  parseKeyslotIDs,
  parseKeyslotLine,
  parseStatus,
  pbkdfArgs,
  type PBKDFOptions,
} from "../../src/diskencryption/cryptsetup.js";
import { CryptsetupError } from "../../src/diskencryption/errors.js";
import { checkKey, isMappingName } from "../../src/diskencryption/header.js";
import { Mutex } from "../../src/diskencryption/mutex.js";

describe("pbkdfArgs", () => {
  const ok: { name: string; in: PBKDFOptions | undefined; want: string[] }[] = [
    { name: "undefined: cryptsetup defaults", in: undefined, want: [] },
    { name: "fast pbkdf2", in: { type: "pbkdf2", iterations: 1000 }, want: ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"] },
    {
      name: "argon2id with costs",
      in: { type: "argon2id", iterations: 4, memoryKiB: 65536, parallelThreads: 2 },
      want: ["--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "65536", "--pbkdf-parallel", "2"],
    },
    { name: "benchmark target", in: { type: "argon2i", iterTimeMs: 500 }, want: ["--pbkdf", "argon2i", "--iter-time", "500"] },
  ];
  for (const tc of ok) it(tc.name, () => expect(pbkdfArgs(tc.in)).toEqual(tc.want));

  const bad: { name: string; in: PBKDFOptions; match: RegExp }[] = [
    { name: "unknown type", in: { type: "scrypt" as never }, match: /pbkdf.type/ },
    { name: "fractional iterations", in: { type: "pbkdf2", iterations: 1.5 }, match: /pbkdf.iterations/ },
    { name: "zero iterations", in: { type: "pbkdf2", iterations: 0 }, match: /pbkdf.iterations/ },
    { name: "memory for pbkdf2", in: { type: "pbkdf2", memoryKiB: 1024 }, match: /argon2 only/ },
    { name: "tiny memory", in: { type: "argon2id", memoryKiB: 1 }, match: /pbkdf.memoryKiB/ },
  ];
  for (const tc of bad) it(`rejects ${tc.name}`, () => expect(() => pbkdfArgs(tc.in)).toThrow(tc.match));
});

describe("output parsers", () => {
  it("parseKeyslotLine finds the unlocked and created keyslot", () => {
    expect(parseKeyslotLine("No usable token is available.\nKey slot 3 unlocked.\nCommand successful.", "unlocked")).toBe(3);
    expect(parseKeyslotLine("Key slot 17 created.\nCommand successful.", "created")).toBe(17);
    expect(parseKeyslotLine("Key slot 1 created.", "unlocked")).toBeUndefined();
    expect(parseKeyslotLine("", "unlocked")).toBeUndefined();
  });

  const statusCases: { name: string; out: string; want: ReturnType<typeof parseStatus> }[] = [
    {
      name: "active LUKS2",
      out: "/dev/mapper/state is active and is in use.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  keysize: 512 bits\n  key location: keyring\n  device:  /dev/vdb\n  sector size:  512\n",
      want: { active: true, type: "LUKS2", device: "/dev/vdb" },
    },
    {
      name: "loop-backed",
      out: "/dev/mapper/state is active.\n  type:    LUKS2\n  device:  /dev/loop0\n  loop:    /var/disk.img\n",
      want: { active: true, type: "LUKS2", device: "/dev/loop0" },
    },
    { name: "inactive", out: "/dev/mapper/state is inactive.", want: { active: false } },
  ];
  for (const tc of statusCases) it(`parseStatus: ${tc.name}`, () => expect(parseStatus(tc.out)).toEqual(tc.want));

  it("parseKeyslotIDs sorts numeric keyslot IDs and rejects non-metadata", () => {
    expect(parseKeyslotIDs(JSON.stringify({ keyslots: { "10": {}, "2": {}, "0": {} }, tokens: {} }))).toEqual([0, 2, 10]);
    expect(parseKeyslotIDs(JSON.stringify({ keyslots: {} }))).toEqual([]);
    expect(() => parseKeyslotIDs("{}")).toThrow(TypeError);
    expect(() => parseKeyslotIDs("Dump operation is not supported")).toThrow(SyntaxError);
  });
});

describe("device names and keys", () => {
  const names: [string, boolean][] = [
    ["state", true],
    ["/dev/mapper/state", true],
    ["/dev/vdb", false],
    ["./disk.img", false],
    ["/var/lib/meshd/disk.img", false],
  ];
  for (const [name, want] of names) it(`isMappingName(${JSON.stringify(name)}) = ${want}`, () => expect(isMappingName(name)).toBe(want));

  it("checkKey refuses empty and non-byte keys without echoing them", () => {
    expect(() => checkKey(new Uint8Array(0), "newKey", "/d")).toThrow(/newKey: must be 1 to \d+ bytes, got 0 bytes/);
    expect(() => checkKey("secret-string" as unknown as Uint8Array, "key", "/d")).toThrow(CryptsetupError);
    try {
      checkKey("secret-string" as unknown as Uint8Array, "key", "/d");
    } catch (err) {
      expect((err as Error).message).not.toContain("secret");
    }
    expect(() => checkKey(new Uint8Array(32), "key", "/d")).not.toThrow();
  });
});

describe("Mutex", () => {
  it("runs sections one at a time in call order, and a throwing section releases the lock", async () => {
    const m = new Mutex();
    const events: string[] = [];
    let running = 0;
    const section = (name: string, fail = false) =>
      m.run(async () => {
        running++;
        expect(running).toBe(1);
        events.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, 5));
        events.push(`end ${name}`);
        running--;
        if (fail) throw new Error(`fail ${name}`);
        return name;
      });
    const results = await Promise.allSettled([section("a"), section("b", true), section("c"), section("d"), section("e")]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual(["a", "fail b", "c", "d", "e"]);
    expect(events).toEqual(["a", "b", "c", "d", "e"].flatMap((n) => [`start ${n}`, `end ${n}`]));
    expect(m.pending).toBe(0);
  });
});
