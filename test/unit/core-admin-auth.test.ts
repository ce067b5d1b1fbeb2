import { describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { adminMessage, AdminChallenges, signAdminRequest } from "../../src/core/admin-auth.js";
import { CoordinatorCredential, verifyConnectionSignature } from "../../src/core/coordinator-auth.js";
import type { Clock } from "../../src/core/clock.js";

class ManualClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

const admin = nacl.sign.keyPair();
const request = Buffer.from("payload");
const cluster = Buffer.alloc(32, 9);

describe("admin challenges", () => {
  const signed = (c: Buffer, method = "RemoveNode", key = admin.secretKey, req = request) => ({ method, challenge: c, request: req, signature: signAdminRequest(key, cluster, method, c, req) });

  it("a valid signature over a fresh challenge yields a single-use grant for that method", () => {
    const ch = new AdminChallenges({ clock: new ManualClock() });
    const c = ch.issue();
    const grant = ch.verify(signed(c), "RemoveNode", admin.publicKey, cluster);
    expect(() => grant.use("ActivateAdditionalNodes")).toThrow(/no valid grant/);
    grant.use("RemoveNode");
    expect(() => grant.use("RemoveNode")).toThrow(/no valid grant/);
  });

  const refusals: Array<{ name: string; run: (ch: AdminChallenges, clock: ManualClock) => void; msg: RegExp }> = [
    { name: "missing signature", run: (ch) => ch.verify({ method: "RemoveNode", challenge: Buffer.alloc(0), request, signature: Buffer.alloc(0) }, "RemoveNode", admin.publicKey, cluster), msg: /admin signature: missing/ },
    { name: "reused challenge", run: (ch) => {
      const c = ch.issue();
      ch.verify(signed(c), "RemoveNode", admin.publicKey, cluster);
      ch.verify(signed(c), "RemoveNode", admin.publicKey, cluster);
    }, msg: /admin challenge: unknown, expired or already used/ },
    { name: "expired challenge", run: (ch, clock) => {
      const c = ch.issue();
      clock.t += 61_000;
      ch.verify(signed(c), "RemoveNode", admin.publicKey, cluster);
    }, msg: /admin challenge: unknown, expired/ },
    { name: "a challenge this Coordinator never issued", run: (ch) => ch.verify(signed(Buffer.alloc(32, 1)), "RemoveNode", admin.publicKey, cluster), msg: /admin challenge: unknown/ },
    { name: "a challenge of another Coordinator", run: (ch, clock) => ch.verify(signed(new AdminChallenges({ clock }).issue()), "RemoveNode", admin.publicKey, cluster), msg: /admin challenge: unknown/ },
    { name: "a signature for another cluster (regression: a host's Coordinator holding the admin's public key)", run: (ch) => ch.verify(signed(ch.issue()), "RemoveNode", admin.publicKey, Buffer.alloc(32, 8)), msg: /does not verify with the admin key for this cluster/ },
    { name: "wrong key", run: (ch) => ch.verify(signed(ch.issue(), "RemoveNode", nacl.sign.keyPair().secretKey), "RemoveNode", admin.publicKey, cluster), msg: /does not verify/ },
    { name: "another method", run: (ch) => ch.verify({ ...signed(ch.issue(), "ActivateAdditionalNodes"), method: "RemoveNode" }, "RemoveNode", admin.publicKey, cluster), msg: /does not verify/ },
    { name: "other request bytes", run: (ch) => ch.verify({ ...signed(ch.issue()), request: Buffer.from("payload!") }, "RemoveNode", admin.publicKey, cluster), msg: /does not verify/ },
    { name: "no stored admin key", run: (ch) => ch.verify(signed(ch.issue()), "RemoveNode", undefined, cluster), msg: /admin key: this Coordinator has none/ },
  ];
  for (const tc of refusals) {
    it(`${tc.name} → PermissionDeniedError naming the check`, () => {
      const clock = new ManualClock();
      const ch = new AdminChallenges({ clock });
      let err: unknown;
      try {
        tc.run(ch, clock);
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string }).code).toBe("permission-denied");
      expect(String((err as Error).message)).toMatch(tc.msg);
    });
  }

  it("the signed message separates its parts by length, so moving bytes between them changes it", () => {
    expect(adminMessage("A", cluster, Buffer.from("bc"), Buffer.from("d")).equals(adminMessage("A", cluster, Buffer.from("b"), Buffer.from("cd")))).toBe(false);
    expect(adminMessage("RemoveNode", cluster, Buffer.alloc(32), request).subarray(4, 26).toString()).toBe("attested-mesh admin v1");
  });

  it("a flood of challenges for others never evicts the admin's (regression: 64 anonymous GetAdminChallenge calls made add-nodes fail)", () => {
    const ch = new AdminChallenges({ clock: new ManualClock() });
    const mine = ch.issue();
    for (let i = 0; i < 10_000; i++) ch.issue();
    expect(() => ch.verify(signed(mine), "RemoveNode", admin.publicKey, cluster).use("RemoveNode")).not.toThrow();
  });
});

describe("cluster credential", () => {
  const secret = Buffer.from("0123456789abcdef0123456789abcdef");
  const cluster = Buffer.alloc(32, 5);
  const ekm = Buffer.alloc(32, 6);

  it("is derived deterministically per cluster, verifies on its connection only, and never under another cluster", () => {
    const a = CoordinatorCredential.derive(secret, cluster);
    expect(CoordinatorCredential.derive(secret, cluster).publicKey).toEqual(a.publicKey);
    const sig = a.signConnection(ekm);
    expect(verifyConnectionSignature(a.publicKey, ekm, sig)).toBe(true);
    expect(verifyConnectionSignature(a.publicKey, Buffer.alloc(32, 7), sig)).toBe(false);
    const other = CoordinatorCredential.derive(secret, Buffer.alloc(32, 8));
    expect(other.publicKey).not.toEqual(a.publicKey);
    expect(verifyConnectionSignature(a.publicKey, ekm, other.signConnection(ekm))).toBe(false);
    expect(verifyConnectionSignature(a.publicKey, ekm, Buffer.alloc(0))).toBe(false);
  });
});
