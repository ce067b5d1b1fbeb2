/**
 * What the crash drivers (test/e2e/crash*.test.ts) share: an activated LocalMesh to start from, how a
 * killed meshd ended, whether a LUKS2 disk file opens with a key, a device's WireGuard key, and the
 * diagnostics a failed check prints.
 */
import { execa } from "execa";
import { onTestFailed } from "vitest";
import { LocalMesh, type LocalMeshOptions } from "../../src/localmesh/local-mesh.js";
import type { LocalPeer } from "../../src/localmesh/local-peer.js";

/** Tally counts what a driver exercised; it prints it when done. */
export interface Tally {
  exercised: number;
  checks: number;
}

/**
 * activatedMesh creates a LocalMesh (LUKS2 disk files, 1 s updates), activates `labels[0]` as the
 * Coordinator with `labels[1]` as its Node and brings the admin's tunnel up.
 */
export async function activatedMesh(options: LocalMeshOptions, labels: [string, string]): Promise<{ mesh: LocalMesh; coordinator: LocalPeer; node: LocalPeer }> {
  const mesh = await LocalMesh.create({ updateIntervalSec: 1, disk: true, readyTimeoutMs: 20_000, ...options });
  const [coordinator, node] = (await mesh.startPeers(labels)) as [LocalPeer, LocalPeer];
  const r = await mesh.activate(coordinator, [node]);
  if (r.exitCode !== 0) throw new Error(`activate: ${r.stderr}`);
  await mesh.connectAdmin();
  return { mesh, coordinator, node };
}

/** exitOf resolves with how the peer's meshd ended, or "still running after …" once `ms` passed. */
export function exitOf(p: LocalPeer, ms = 30_000): Promise<string> {
  return Promise.race([p.meshdExited(), new Promise<string>((r) => setTimeout(() => r(`still running after ${ms / 1000} s`), ms))]);
}

/** opensWith says whether the peer's LUKS2 disk file opens with `key` (cryptsetup open --test-passphrase). */
export async function opensWith(p: LocalPeer, key: Buffer): Promise<boolean> {
  return (await execa("cryptsetup", ["open", "--test-passphrase", "--key-file", "-", p.diskFile!], { input: key, reject: false })).exitCode === 0;
}

/** diskUUID reads the LUKS UUID of the peer's disk file. */
export async function diskUUID(p: LocalPeer): Promise<string> {
  return (await execa("cryptsetup", ["luksUUID", p.diskFile!])).stdout.trim();
}

/** wgPublicKey reads a peer's WireGuard public key from its device. */
export async function wgPublicKey(mesh: LocalMesh, p: LocalPeer): Promise<string> {
  return (await mesh.net.exec(p.netns, "wg", ["show", p.wgInterface, "public-key"])).stdout.trim();
}

/** diagnoseOnFailure prints the mesh's progress lines and every process's log tail if the current test fails. */
export function diagnoseOnFailure(progress: readonly string[], mesh: () => LocalMesh | undefined): void {
  onTestFailed(() => {
    process.stderr.write(`\n--- localmesh progress\n${progress.slice(-60).join("\n")}\n${mesh()?.diagnostics(40) ?? ""}\n`);
  });
}
