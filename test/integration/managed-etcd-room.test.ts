/**
 * A Coordinator whose state disk has no room for an etcd member is refused with the reason, before
 * anything starts (regression: etcd exited at once on ENOSPC while preallocating its WAL, was
 * restarted forever, and activation failed only with "no answer from etcd within 30000 ms").
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nullLogger } from "../../src/shared/logger.js";
import { DeferredStore } from "../../src/core/store-members.js";
import { ManagedEtcd } from "../../src/store/managed-etcd.js";

describe("managed etcd on a small disk", () => {
  it("create and join refuse a state dir with less than 128 MiB free, naming the free space, and start no etcd", async () => {
    const dir = mkdtempSync(join(tmpdir(), "am-etcd-room-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir]);
    try {
      const etcd = new ManagedEtcd({ etcdBin: "/usr/bin/etcd", dir: join(dir, "etcd"), clientPort: 1, peerPort: 1, store: new DeferredStore(), logger: nullLogger });
      const secrets = { masterSecret: Buffer.alloc(32, 1), clusterID: Buffer.alloc(32, 2) };
      await expect(etcd.create("10.118.0.1", secrets)).rejects.toThrow(/has 1[0-6] MiB free; an etcd member needs at least 128 MiB .*larger state disk/);
      await expect(etcd.join("10.118.0.2", secrets, JSON.stringify({ initialCluster: "a=https://10.118.0.1:2380" }))).rejects.toThrow(/MiB free/);
      expect(existsSync(join(dir, "etcd", "etcd.pid"))).toBe(false);
      expect(existsSync(join(dir, "etcd", "tls"))).toBe(false);
      await etcd.close();
    } finally {
      execFileSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
