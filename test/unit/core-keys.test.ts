import { describe, expect, it } from "vitest";
import { deriveDataKey, deriveOwnerID, newClusterID, stateDiskKey } from "../../src/core/keys.js";

// Vectors computed independently with Python's hmac/hashlib (RFC 5869 HKDF-SHA256).
const ms32 = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const cid = Buffer.alloc(32, 0xaa);
const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

describe("key derivation (DESIGN.md: HKDF-SHA256)", () => {
  const vectors = [
    { name: "ownerID of 32-byte secret", got: () => deriveOwnerID(ms32), hex: "7bdf26e324a3251daf27a67c4b7ecbc8db171739d94d72bf93db7f16a61ff75e" },
    { name: "ownerID of 16-byte secret", got: () => deriveOwnerID(Buffer.from("0123456789abcdef")), hex: "4af4557137c44ce75234c8ddfb976799029ce98f5ec56c92a16679642232528a" },
    {
      name: "state-disk key (info = \"disk-\" + LUKS UUID)",
      got: () => stateDiskKey(ms32, cid, uuid),
      hex: "ccc16d453f4896a481c24d2b9d40150577a738e0623f374e01686dca9d1bedd1",
    },
    {
      name: "state-disk key of a 16-byte secret",
      got: () => stateDiskKey(Buffer.from("0123456789abcdef"), cid, "ffffffff-0000-4000-8000-000000000001"),
      hex: "2b6d5c15c64fe6c634124d50bfda9ff93cbb718a9091a3e3cdfab70351af63c0",
    },
    {
      name: "data key whose ID is a disk UUID (the first version's disk key: info = \"key-\" + UUID)",
      got: () => deriveDataKey(ms32, cid, uuid, 32),
      hex: "b5bccffcdfd0852debd2b452e496a886d9035260cf1db9ee242a4c24e0e3c220",
    },
    {
      name: "data key whose ID is \"disk-\" + UUID",
      got: () => deriveDataKey(ms32, cid, `disk-${uuid}`, 32),
      hex: "13346bd621cc5416d2ec313878b0c1019db7cc5fb89b61b47f9f461d9984dd62",
    },
    {
      name: "64-byte data key",
      got: () => deriveDataKey(ms32, cid, "mykey", 64),
      hex: "59bcab2080f62b13f5e9a48633b9deef6f3a1b083313bdda7807f58c031b37d99789f37e8cb07d3180aff11f044dc8293aab988be8be1f3d29fbfdd36317d2eb",
    },
  ];
  for (const v of vectors) it(v.name, () => expect(v.got().toString("hex")).toBe(v.hex));

  const bad = [
    { name: "empty master secret", fn: () => deriveOwnerID(Buffer.alloc(0)), msg: /masterSecret: must be 16 to 64 bytes, got 0/ },
    { name: "short master secret", fn: () => deriveOwnerID(Buffer.alloc(15)), msg: /got 15/ },
    { name: "long master secret", fn: () => deriveOwnerID(Buffer.alloc(65)), msg: /got 65/ },
    { name: "short cluster ID", fn: () => deriveDataKey(ms32, Buffer.alloc(8), "k", 32), msg: /clusterID: must be 32 bytes/ },
    { name: "upper-case disk UUID", fn: () => stateDiskKey(ms32, cid, "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"), msg: /stateDiskUUID/ },
    { name: "bad key ID", fn: () => deriveDataKey(ms32, cid, "a/b", 32), msg: /dataKeyID/ },
    { name: "short key length", fn: () => deriveDataKey(ms32, cid, "k", 8), msg: /length/ },
  ];
  for (const b of bad) it(`refuses ${b.name}`, () => expect(b.fn).toThrow(b.msg));

  it("error messages never contain the secret", () => {
    const secret = Buffer.from("super-secret-master-key-material-that-is-far-too-long-for-the-limit-xx");
    try {
      deriveOwnerID(secret);
    } catch (err) {
      expect(String(err)).not.toContain(secret.toString());
    }
  });

  it("no data key ID yields a disk key (separate HKDF labels; regression: disk keys were data keys)", () => {
    const disk = stateDiskKey(ms32, cid, uuid);
    for (const id of [uuid, `disk-${uuid}`, `key-disk-${uuid}`, "disk", `${uuid}-`]) {
      expect(deriveDataKey(ms32, cid, id, 32).equals(disk), id).toBe(false);
    }
  });

  it("cluster IDs are fresh", () => expect(newClusterID().equals(newClusterID())).toBe(false));
});
