import { describe, expect, it } from "vitest";
import { FailedPreconditionError } from "../../src/core/errors.js";
import { PeerState, StateMachine } from "../../src/core/state.js";

const S = PeerState;

describe("state machine", () => {
  const moves: Array<{ from: PeerState; to: PeerState; ok: boolean }> = [
    { from: S.Uninitialized, to: S.AcceptingInit, ok: true },
    { from: S.AcceptingInit, to: S.ActivatingNodes, ok: true },
    { from: S.AcceptingInit, to: S.NodeWaitingForClusterJoin, ok: true },
    { from: S.NodeWaitingForClusterJoin, to: S.IsNode, ok: true },
    { from: S.AcceptingInit, to: S.Failed, ok: true },
    { from: S.IsNode, to: S.Failed, ok: true },
    { from: S.ActivatingNodes, to: S.AcceptingInit, ok: false },
    { from: S.IsNode, to: S.NodeWaitingForClusterJoin, ok: false },
    { from: S.AcceptingInit, to: S.IsNode, ok: false },
    { from: S.NodeWaitingForClusterJoin, to: S.ActivatingNodes, ok: false },
    { from: S.Failed, to: S.AcceptingInit, ok: false },
  ];
  for (const m of moves) {
    it(`${m.from} → ${m.to} is ${m.ok ? "allowed" : "refused"}`, () => {
      const sm = new StateMachine(m.from);
      if (m.ok) {
        sm.advance("test", m.from, m.to);
        expect(sm.get()).toBe(m.to);
      } else {
        expect(() => sm.advance("test", m.from, m.to)).toThrow(FailedPreconditionError);
        expect(sm.get()).toBe(m.from);
      }
    });
  }

  it("advance from a state the machine is not in is refused and changes nothing", () => {
    const sm = new StateMachine(S.ActivatingNodes);
    expect(() => sm.advance("ActivateAsCoordinator", S.AcceptingInit, S.ActivatingNodes)).toThrow(/ActivateAsCoordinator: peer is ActivatingNodes, needs AcceptingInit/);
    expect(sm.get()).toBe(S.ActivatingNodes);
  });

  it("of two concurrent advances exactly one wins", async () => {
    const sm = new StateMachine(S.AcceptingInit);
    const results = await Promise.allSettled([
      Promise.resolve().then(() => sm.advance("a", S.AcceptingInit, S.ActivatingNodes)),
      Promise.resolve().then(() => sm.advance("b", S.AcceptingInit, S.NodeWaitingForClusterJoin)),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });
});
