/**
 * MeshEvents are the core's observations for a metrics exporter (src/metrics/): the core reports
 * what happened, an exporter counts it. Every method is optional; none may throw or block, and none
 * is ever given a secret.
 */
export interface MeshEvents {
  /** propagation: a Node acknowledged a version `delayMs` after its commit (once per Node and version). */
  propagation?(delayMs: number): void;
  /** diskKey: a state-disk key request ended (released to the disk's peer, or refused naming why). */
  diskKey?(result: "released" | "refused" | "failed"): void;
  /** dataKey: a GetDataKey ended. */
  dataKey?(result: "released" | "refused" | "failed"): void;
  /** activation: this Coordinator's activation of one peer ended after `ms`. */
  activation?(role: "node" | "coordinator", result: "ok" | "failed", ms: number): void;
}

/** noEvents observes nothing. */
export const noEvents: MeshEvents = {};

/** resultOf classifies an error for events: a refusal (permission, argument, not found) or a failure. */
export function resultOf(err: unknown): "refused" | "failed" {
  const code = (err as { code?: unknown }).code;
  return code === "permission-denied" || code === "invalid-argument" || code === "not-found" || code === "failed-precondition" ? "refused" : "failed";
}
