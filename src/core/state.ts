import { FailedPreconditionError, InvalidArgumentError } from "./errors.js";

/** PeerState is where a peer is in its life (DESIGN.md "State machine"). */
export enum PeerState {
  Uninitialized = "Uninitialized",
  AcceptingInit = "AcceptingInit",
  ActivatingNodes = "ActivatingNodes",
  NodeWaitingForClusterJoin = "NodeWaitingForClusterJoin",
  IsNode = "IsNode",
  Failed = "Failed",
}

const allowed: Record<PeerState, readonly PeerState[]> = {
  [PeerState.Uninitialized]: [PeerState.AcceptingInit],
  [PeerState.AcceptingInit]: [PeerState.ActivatingNodes, PeerState.NodeWaitingForClusterJoin],
  [PeerState.NodeWaitingForClusterJoin]: [PeerState.IsNode],
  [PeerState.ActivatingNodes]: [],
  [PeerState.IsNode]: [],
  [PeerState.Failed]: [],
};

/** parsePeerState turns a persisted name back into a PeerState. */
export function parsePeerState(name: string): PeerState {
  if (!Object.values(PeerState).includes(name as PeerState)) throw new InvalidArgumentError(`state: unknown peer state ${JSON.stringify(name)}`);
  return name as PeerState;
}

/**
 * StateMachine holds a peer's state. Transitions only move forward; any state may move to Failed.
 * `advance` is synchronous, so two concurrent callers can never both leave the same state.
 */
export class StateMachine {
  #state: PeerState;

  constructor(initial: PeerState = PeerState.Uninitialized) {
    this.#state = initial;
  }

  /** get returns the current state. */
  get(): PeerState {
    return this.#state;
  }

  /** require throws FailedPreconditionError (naming `operation`) unless the state is one of `states`. */
  require(operation: string, ...states: PeerState[]): void {
    if (!states.includes(this.#state)) {
      throw new FailedPreconditionError(`${operation}: peer is ${this.#state}, needs ${states.join(" or ")}`);
    }
  }

  /** advance moves from `from` to `to`, or throws FailedPreconditionError and changes nothing. */
  advance(operation: string, from: PeerState, to: PeerState): void {
    this.require(operation, from);
    if (to !== PeerState.Failed && !allowed[from].includes(to)) {
      throw new FailedPreconditionError(`${operation}: cannot move from ${from} to ${to}`);
    }
    this.#state = to;
  }

  /** fail moves to Failed from any state. */
  fail(): void {
    this.#state = PeerState.Failed;
  }
}
