// A joining Node's first poll through the VPN is retried while the Coordinator cannot be reached
// (a WireGuard handshake retry takes 5 s, longer than one poll's deadline on a short interval), and
// only then: a refusal ends it at once, and it gives up after 20 s.
import { describe, expect, it } from "vitest";
import type { Clock } from "../../src/core/clock.js";
import { CoreError, PermissionDeniedError, UnavailableError } from "../../src/core/errors.js";
import { nullLogger } from "../../src/shared/logger.js";
import { firstContact } from "../../src/core/node-activation.js";

/** steppingClock: every sleep advances time by its length at once. */
function steppingClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c as Clock & { t: number };
}

describe("firstContact", () => {
  it("retries unreachable and timed-out polls until one answers", async () => {
    const errors = [new UnavailableError("no route yet"), new CoreError("deadline-exceeded", "Deadline exceeded after 3s")];
    let calls = 0;
    const v = await firstContact(async () => {
      calls++;
      const e = errors.shift();
      if (e) throw e;
      return 42;
    }, steppingClock(), nullLogger);
    expect([v, calls]).toEqual([42, 3]);
  });

  it("a refusal is not retried", async () => {
    let calls = 0;
    const err = await firstContact(async () => {
      calls++;
      throw new PermissionDeniedError("not a registered peer");
    }, steppingClock(), nullLogger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(calls).toBe(1);
  });

  it("gives up after 20 s, with the last error", async () => {
    const clock = steppingClock();
    const err = (await firstContact(async () => {
      clock.t += 2_500; // each attempt waits out a poll deadline
      throw new UnavailableError("unreachable");
    }, clock, nullLogger).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe("unreachable");
    expect(clock.t).toBeGreaterThanOrEqual(20_000);
    expect(clock.t).toBeLessThan(24_000);
  });
});
