// A rebooted peer waits for its disk key from the moment it starts (DiskKeyRequest.expect): GetState
// names the disk before the first RequestStateDiskKey, and a key pushed in that window (meshctl
// recover racing the peer's start) is taken; a key for another disk, or one that opens nothing, is not.
import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.js";
import { DiskKeyRequest } from "../../src/core/disk-key-request.js";
import { nullLogger } from "../../src/shared/logger.js";
import type { PeerClient } from "../../src/core/remote.js";
import { FakeDisk } from "../helpers/fakes.js";

function setup(): { disk: FakeDisk; req: DiskKeyRequest; asked: string[] } {
  const disk = new FakeDisk();
  const asked: string[] = [];
  const peerClient = {
    requestStateDiskKey: async (ep: string) => {
      asked.push(ep);
      throw new Error("unreachable");
    },
  } as unknown as PeerClient;
  const req = new DiskKeyRequest({ peerClient, disk, clock: systemClock, logger: nullLogger, backoffMs: () => 5 });
  return { disk, req, asked };
}

describe("DiskKeyRequest.expect", () => {
  it("names the awaited disk before any request, and a key pushed then ends the later request at once", async () => {
    const { disk, req, asked } = setup();
    expect(req.waitingFor).toBeUndefined();
    req.expect(disk.diskUUID);
    expect(req.waitingFor).toBe(disk.diskUUID);
    await req.receive(disk.diskUUID, disk.passphrase);
    await req.request(disk.diskUUID, ["198.18.0.2:9000"], { pushOnly: true });
    expect(asked).toEqual([]); // nobody had to be asked
    expect(req.waitingFor).toBeUndefined();
  });

  it("a request after expect keeps waiting for that disk and takes a push made while it retries", async () => {
    const { disk, req, asked } = setup();
    req.expect(disk.diskUUID);
    const done = req.request(disk.diskUUID, ["198.18.0.2:9000"], { pushOnly: true });
    while (asked.length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(req.waitingFor).toBe(disk.diskUUID);
    await req.receive(disk.diskUUID, disk.passphrase);
    await done;
  });

  it("refuses a key for another disk, or one that opens nothing, and keeps waiting", async () => {
    const { disk, req } = setup();
    req.expect(disk.diskUUID);
    await expect(req.receive("00000000-0000-4000-8000-000000000000", disk.passphrase)).rejects.toThrow(/not waiting for the key of disk 00000000/);
    await expect(req.receive(disk.diskUUID, Buffer.alloc(32, 1))).rejects.toThrow(/opens no keyslot/);
    expect(req.waitingFor).toBe(disk.diskUUID);
  });
});
