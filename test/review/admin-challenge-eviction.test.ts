/**
 * Review finding (low, availability): GetAdminChallenge is unauthenticated and AdminChallenges keeps
 * at most 64 outstanding challenges, dropping the oldest. Anyone who reaches the pubapi (within the
 * per-IP rate limit of 32/s, or from a few addresses) evicts the admin's challenge between
 * GetAdminChallenge and the signed call, so every admin operation (add-nodes, remove-node) fails.
 *
 * Expected: a flood of challenges from others does not invalidate the admin's (e.g. bind challenges
 * to the connection that asked, or cap outstanding challenges per caller address).
 */
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { AdminChallenges, signAdminRequest } from "../../src/core/admin-auth.js";

describe("review: admin challenges survive a flood of GetAdminChallenge", () => {
  it("the admin's challenge still verifies after 64 challenges issued to someone else", () => {
    const clock = { now: () => 1_000, sleep: async () => {} };
    const challenges = new AdminChallenges({ clock: clock as never });
    const admin = nacl.sign.keyPair();
    const request = Buffer.from("payload");
    const mine = challenges.issue();
    for (let i = 0; i < 64; i++) challenges.issue(); // an anonymous caller, 2 s of its rate limit
    const signature = signAdminRequest(admin.secretKey, "RemoveNode", mine, request);
    expect(() => challenges.verify({ method: "RemoveNode", challenge: mine, request, signature }, "RemoveNode", admin.publicKey)).not.toThrow();
  });
});
