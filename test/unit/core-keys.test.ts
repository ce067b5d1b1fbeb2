import { describe, expect, it } from "vitest";
import { deriveDataKey, deriveOwnerID, newClusterID, stateDiskKey } from "../../src/core/keys.js";

// Vectors computed independently with Python's hmac/hashlib (RFC 5869 HKDF-SHA256).
const ms32 = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const cid = Buffer.alloc(32, 0xaa);

describe("key derivation (DESIGN.md: HKDF-SHA256)", () => {
  const vectors = [
    { name: "ownerID of 32-byte secret", got: () => deriveOwnerID(ms32), hex: "7bdf26e324a3251daf27a67c4b7ecbc8db171739d94d72bf93db7f16a61ff75e" },
    { name: "ownerID of 16-byte secret", got: () => deriveOwnerID(Buffer.from("0123456789abcdef")), hex: "4af4557137c44ce75234c8ddfb976799029ce98f5ec56c92a16679642232528a" },
    {
      name: "state-disk key (keyID = LUKS UUID)",
      got: () => stateDiskKey(ms32, cid, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
      hex: "b5bccffcdfd0852debd2b452e496a886d9035260cf1db9ee242a4c24e0e3c220",
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

  it("cluster IDs are fresh", () => expect(newClusterID().equals(newClusterID())).toBe(false));
});
