import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readAdminFile, readAdminFileIfAny, updateCoordinatorEndpoints } from "../../src/cli/admin-file.js";

const good = {
  ownerId: "a".repeat(64),
  clusterId: "b".repeat(64),
  adminVPNIP: "10.118.1.1",
  coordinatorPublicEndpoint: "192.0.2.1:9000",
  coordinatorEndpoints: ["192.0.2.1:9000", "192.0.2.2:9000"],
  adminPubKey: Buffer.alloc(32, 7).toString("base64"),
};

describe("admin.json", () => {
  let dir: string;
  afterEach(async () => dir && rm(dir, { recursive: true, force: true }));
  const write = async (v: unknown) => {
    dir = await mkdtemp(join(tmpdir(), "am-admin-file-"));
    await writeFile(join(dir, "admin.json"), typeof v === "string" ? v : JSON.stringify(v));
  };

  it("reads the IDs, the admin key and every Coordinator (the first one once)", async () => {
    await write(good);
    const f = await readAdminFile(dir, "x");
    expect(f.ownerID).toEqual(Buffer.from(good.ownerId, "hex"));
    expect(f.clusterID).toEqual(Buffer.from(good.clusterId, "hex"));
    expect(f.adminPubKey).toBe(good.adminPubKey);
    expect(f.coordinatorEndpoints).toEqual(["192.0.2.1:9000", "192.0.2.2:9000"]);
  });

  it("names the file and the field for each defect; a missing file says where it is expected", async () => {
    const cases: Array<[unknown, RegExp]> = [
      ["{not json", /admin\.json: not JSON/],
      [[1, 2], /must be a JSON object/],
      [{ ...good, ownerId: "A".repeat(64) }, /ownerId must be 64 lower-case hex/],
      [{ ...good, clusterId: undefined }, /clusterId must be 64 lower-case hex/],
      [{ ...good, adminPubKey: "c2hvcnQ=" }, /adminPubKey must be a base64 Ed25519 public key/],
      [{ ...good, coordinatorEndpoints: "192.0.2.1:9000" }, /coordinatorEndpoints must be a list/],
      [{ ...good, coordinatorEndpoints: [""] }, /coordinatorEndpoints must be a list/],
      [{ ...good, coordinatorPublicEndpoint: 7 }, /coordinatorPublicEndpoint must be/],
    ];
    for (const [v, want] of cases) {
      await write(v);
      await expect(readAdminFile(dir, "x"), JSON.stringify(v)).rejects.toThrow(want);
      await rm(dir, { recursive: true, force: true });
    }
    dir = await mkdtemp(join(tmpdir(), "am-admin-file-"));
    await expect(readAdminFile(dir, "meshctl recover reads it: --admin-dir DIR")).rejects.toThrow(/admin\.json: not found \(meshctl recover reads it: --admin-dir DIR\)/);
    expect(await readAdminFileIfAny(dir)).toBeUndefined();
  });

  it("a rewrite of the Coordinator list keeps every other field", async () => {
    await write({ ...good, somethingNewer: { kept: true } });
    await updateCoordinatorEndpoints(dir, (known) => [...known, "192.0.2.3:9000"]);
    const after = JSON.parse(await readFile(join(dir, "admin.json"), "utf8"));
    expect(after).toEqual({ ...good, somethingNewer: { kept: true }, coordinatorEndpoints: [...good.coordinatorEndpoints, "192.0.2.3:9000"] });
  });
});
