import { writeSync } from "node:fs";

/**
 * Named crash points for fault injection (issue 14, crash-only meshd). With the environment variable
 * AM_CRASH_AT set to one of these names, the process kills itself with SIGKILL the first time it
 * reaches that point: no handler runs, no buffer is flushed, exactly as an OOM kill or a power cut
 * would leave it. Without the variable a crash point does nothing; no flag or config file reaches
 * it. meshd refuses to start when AM_CRASH_AT names no known point (checkCrashPointEnv), so a
 * test's typo never passes as "survived".
 */
export const crashPoints = [
  // The first Coordinator's own activation (ActivateAsCoordinator, core/coordinator-activation.ts).
  "first-coordinator:after-store-member",
  "first-coordinator:after-store",
  "first-coordinator:after-node-state",
  "first-coordinator:after-mark",
  "first-coordinator:after-disk-key",
  "first-coordinator:after-vpn",
  // Node side of ActivateAsNode, between the steps of its commit (core/node-activation.ts).
  "node-activation:after-node-state",
  "node-activation:after-mark",
  "node-activation:after-disk-key",
  "node-activation:after-vpn",
  // Coordinator side of activating one Node (core/coordinator.ts).
  "coordinator-activation:after-ip",
  "coordinator-activation:after-disk-claimed",
  "coordinator-activation:after-peer-stored",
  // Adding a further Coordinator: the first Coordinator's side (core/coordinator-join.ts) and the
  // new Coordinator's commit (core/coordinator-activation.ts).
  "add-coordinator:after-peer-stored",
  "add-coordinator:after-member-added",
  "add-coordinator:before-promote",
  "add-coordinator:after-promote",
  "additional-coordinator:after-node-state",
  "additional-coordinator:after-disk-key",
  "additional-coordinator:after-member-joined",
  "additional-coordinator:after-role",
  // A durable file write (the embedded store's commit, node state): between the temp file and the
  // rename, and between the rename and the directory's fsync (shared/atomic-file.ts).
  "atomic-write:before-rename",
  "atomic-write:after-rename",
] as const;

/** CrashPoint names one point. */
export type CrashPoint = (typeof crashPoints)[number];

/** crashAt is AM_CRASH_AT, read once: the one place the variable is read. */
const crashAt = process.env.AM_CRASH_AT;

/**
 * crashPoint kills this process with SIGKILL when AM_CRASH_AT names `point` (after one line to
 * stderr saying so, written synchronously); otherwise it returns at once.
 */
export function crashPoint(point: CrashPoint): void {
  if (crashAt !== point) return;
  try {
    writeSync(2, `crash point ${point} reached (AM_CRASH_AT): SIGKILL\n`);
  } finally {
    process.kill(process.pid, "SIGKILL");
  }
}

/** checkCrashPointEnv throws unless AM_CRASH_AT is unset or names a known crash point. */
export function checkCrashPointEnv(): void {
  if (crashAt === undefined || crashAt === "") return;
  if (!(crashPoints as readonly string[]).includes(crashAt)) {
    throw new Error(`AM_CRASH_AT=${JSON.stringify(crashAt)} names no crash point; known: ${crashPoints.join(", ")}`);
  }
}
