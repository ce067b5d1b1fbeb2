import { afterEach, describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { createATLSChannelCredentials } from "../../src/atls/client.js";
import { probeEndpoint } from "../../src/atls/probe.js";
import { createTPMValidator } from "../../src/attestation/tpm-validator.js";
import { PeerState } from "../../src/core/state.js";
import { activateAsCoordinator, getState } from "../../src/pubapi/admin.js";
import { TestMesh } from "../helpers/mesh.js";
import { swtpmPolicy } from "../helpers/swtpm.js";

const secret = Buffer.from("atls tpm test master secret 32b!");
const adminKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString("base64");

describe("aTLS on simulated-TPM evidence (swtpm per peer)", () => {
  let mesh: TestMesh;
  afterEach(async () => mesh?.close());

  it("accepted with a policy holding the peer's real PCR values", async () => {
    mesh = new TestMesh();
    const peer = await mesh.startPeer("peer");
    const probe = await probeEndpoint("127.0.0.1", peer.hardware.port, mesh.validators());
    const policy = swtpmPolicy();
    for (let i = 0; i <= 10; i++) policy.tpm.pcrs.set(i, probe.verdict.facts[`pcr${i}`]);
    const strict = await probeEndpoint("127.0.0.1", peer.hardware.port, [createTPMValidator(policy)], { requireFresh: true });
    expect(strict.verdict.ok).toBe(true);
    expect(strict.verdict.checks.find((c) => c.name === "policy pcrs")!.status).toBe("passed");
    expect(strict.verdict.checks.find((c) => c.name === "fresh marker")!.status).toBe("passed");
  });

  it("rejected when the policy expects a different PCR value, naming the check", async () => {
    mesh = new TestMesh();
    const peer = await mesh.startPeer("peer");
    const policy = swtpmPolicy();
    policy.tpm.pcrs.set(4, "ab".repeat(32));
    const err = await probeEndpoint("127.0.0.1", peer.hardware.port, [createTPMValidator(policy)]).catch((e: Error) => e);
    expect(String(err as Error)).toMatch(/^aTLS: tpm policy pcrs: .*PCR 4/);
    const grpcErr = await getState(peer.endpoint, createATLSChannelCredentials([createTPMValidator(policy)])).catch((e: Error) => e);
    expect(String((grpcErr as Error).message)).toMatch(/aTLS: tpm policy pcrs/);
  });

  it("activation is refused when PCR 11 is already extended, and the peer stays untouched", async () => {
    mesh = new TestMesh();
    const coord = await mesh.startPeer("coord");
    await coord.tpm!.pcrEvent(11, Buffer.alloc(32, 1));
    const err = await activateAsCoordinator(
      coord.endpoint,
      mesh.credentials(true),
      { adminVPNPubKey: adminKey(), adminPubKey: mesh.admin.publicKey, masterSecret: secret, nodeEndpoints: [], coordinatorEndpoints: [] },
      () => {},
    ).catch((e: Error) => e);
    expect(String((err as Error).message)).toMatch(/aTLS: tpm fresh marker: .*11/);
    expect(coord.peer.state).toBe(PeerState.AcceptingInit);
    expect(coord.marker.marks).toBe(0);
  });

  it("a peer whose TPM shows only one of PCR 11/12 set refuses to start, saying so", async () => {
    mesh = new TestMesh();
    const peer = await mesh.startPeer("peer");
    await peer.tpm!.pcrEvent(12, Buffer.alloc(32, 1));
    const err = await mesh.restartPeer(peer).catch((e: Error) => e);
    expect(String((err as Error).message)).toMatch(/start: initialized marker is inconsistent/);
  });
});
