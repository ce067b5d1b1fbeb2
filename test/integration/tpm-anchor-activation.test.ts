import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";

import { createATLSServerCredentials } from "../../src/atls/server.js";
import { runActivate } from "../../src/cli/activate.js";
import { PeerState } from "../../src/core/state.js";
import { TestMesh } from "../helpers/mesh.js";
import { forgedTPMIssuer } from "../helpers/tpm-builder.js";

/**
 * Finding 1 of issue 10, Coordinator side: a Coordinator activating a "Node" that answers with a
 * software-forged TPM document (restricted-signing bits on a software key, fresh PCRs) refuses it at
 * "ak anchoring" during the aTLS handshake; the real Node next to it is activated.
 */

process.env.TSS2_LOG ??= "all+none";

describe("a Coordinator refuses a Node with forged TPM evidence", () => {
  let mesh: TestMesh;
  const stops: (() => void)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) s();
    await mesh?.close();
  });

  it("the forged Node fails naming ak anchoring; the real Node is activated", async () => {
    mesh = new TestMesh();
    const coord = await mesh.startPeer("coord");
    const real = await mesh.startPeer("node");
    const forged = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      forged.bindAsync("127.0.0.1:0", createATLSServerCredentials(forgedTPMIssuer("none")), (err, p) => (err ? reject(err) : resolve(p))),
    );
    stops.push(() => forged.forceShutdown());
    const out = await mkdtemp(join(tmpdir(), "am-forged-"));
    const lines: string[] = [];
    try {
      const code = await runActivate(
        { coordinator: coord.endpoint, nodes: [real.endpoint, `127.0.0.1:${port}`], coordinators: [], masterSecret: Buffer.alloc(32, 7), outDir: out, credentials: mesh.credentials(true) },
        { out: (l) => lines.push(l), err: (l) => lines.push(l) },
      );
      expect(code, lines.join("\n")).toBe(1);
      const failure = lines.find((l) => l.includes(`failed: 127.0.0.1:${port}`));
      expect(failure, lines.join("\n")).toMatch(/ak anchoring/);
      expect(real.peer.state).toBe(PeerState.IsNode);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
