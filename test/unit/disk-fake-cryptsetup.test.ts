/**
 * LUKSDisk against a fake `cryptsetup` (a shell script with canned answers): mapping-name
 * resolution (no device-mapper needed), exit-status mapping end to end, timeouts, a missing binary.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DeviceBusyError, DeviceNotFoundError, DiskError, NotLUKSError } from "../../src/diskencryption/errors.js";
import { LUKSDisk } from "../../src/diskencryption/luks-disk.js";
import { makeTempDir, type TempDir } from "../helpers/luks.js";

let tmp: TempDir;
let backing: string;
let argvLog: string;
beforeEach(async () => {
  tmp = await makeTempDir("am-disk-fake-");
  backing = join(tmp.dir, "backing.img");
  argvLog = join(tmp.dir, "argv.log");
  await writeFile(backing, "");
});
afterEach(async () => tmp.cleanup());

/** fake writes a script that logs its argv and then runs `cases` (a shell `case "$1" in … esac` body). */
async function fake(cases: string): Promise<string> {
  const path = join(tmp.dir, "cryptsetup");
  await writeFile(path, `#!/bin/sh\necho "$*" >> '${argvLog}'\ncase "$1" in\n${cases}\nesac\nexit 99\n`, { mode: 0o700 });
  return path;
}

const luks2Answers = `
  isLuks) exit 0 ;;
  luksUUID) echo "0A1B2C3D-0000-4000-8000-00000000ABCD"; exit 0 ;;`;

async function rejection(p: Promise<unknown>): Promise<DiskError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DiskError);
  return err as DiskError;
}

describe("mapping names resolve to the backing device through cryptsetup status", () => {
  for (const device of ["state", "/dev/mapper/state"]) {
    it(`${device}: uuid() reads the backing device's header, lower-cased`, async () => {
      const cs = await fake(`  status) printf '/dev/mapper/state is active and is in use.\\n  type:    LUKS2\\n  device:  ${backing}\\n'; exit 0 ;;${luks2Answers}`);
      const d = new LUKSDisk({ device, cryptsetupPath: cs });
      expect(await d.uuid()).toBe("0a1b2c3d-0000-4000-8000-00000000abcd");
      expect(await d.devicePath()).toBe(backing);
      const argv = await readFile(argvLog, "utf8");
      expect(argv).toContain("status state");
      expect(argv).toContain(`luksUUID ${backing}`);
    });
  }

  it("an inactive mapping gives DeviceNotFoundError naming it", async () => {
    const cs = await fake(`  status) echo "/dev/mapper/state is inactive."; exit 4 ;;`);
    const err = await rejection(new LUKSDisk({ device: "state", cryptsetupPath: cs }).uuid());
    expect(err).toBeInstanceOf(DeviceNotFoundError);
    expect(err.message).toMatch(/no active device-mapper mapping named "state"/);
  });

  it("a non-LUKS mapping gives NotLUKSError", async () => {
    const cs = await fake(`  status) printf '/dev/mapper/state is active.\\n  type:    PLAIN\\n  device:  ${backing}\\n'; exit 0 ;;`);
    const err = await rejection(new LUKSDisk({ device: "state", cryptsetupPath: cs }).uuid());
    expect(err).toBeInstanceOf(NotLUKSError);
    expect(err.message).toContain("PLAIN");
  });

  it("format refuses a mapping name", async () => {
    const cs = await fake(luks2Answers);
    const err = await rejection(new LUKSDisk({ device: "state", cryptsetupPath: cs }).format(new Uint8Array(32)));
    expect(err.reason).toBe("invalid-argument");
  });
});

describe("exit statuses and process failures become typed errors", () => {
  it("exit 5 on the header is DeviceBusyError, retryable", async () => {
    const cs = await fake(`  isLuks) exit 0 ;;\n  luksUUID) echo "Device ${backing} is busy." >&2; exit 5 ;;`);
    const err = await rejection(new LUKSDisk({ device: backing, cryptsetupPath: cs }).uuid());
    expect(err).toBeInstanceOf(DeviceBusyError);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(backing);
    expect(err.message).toContain("is busy");
  });

  it("exit 3 while testing a key is out-of-memory, retryable", async () => {
    const cs = await fake(`  isLuks) exit 0 ;;\n  open) cat > /dev/null; exit 3 ;;`);
    const err = await rejection(new LUKSDisk({ device: backing, cryptsetupPath: cs }).testPassphrase(new Uint8Array(32)));
    expect(err.reason).toBe("out-of-memory");
    expect(err.retryable).toBe(true);
  });

  it("a hung cryptsetup is killed after commandTimeoutMs", async () => {
    const cs = await fake(`  isLuks) exec sleep 10 ;;`);
    const started = Date.now();
    const err = await rejection(new LUKSDisk({ device: backing, cryptsetupPath: cs, commandTimeoutMs: 200 }).uuid());
    expect(err.reason).toBe("timeout");
    expect(err.retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("a missing binary says so", async () => {
    const err = await rejection(new LUKSDisk({ device: backing, cryptsetupPath: join(tmp.dir, "no-such-cryptsetup") }).uuid());
    expect(err.reason).toBe("cryptsetup-not-found");
    expect(err.message).toContain("no-such-cryptsetup");
  });

  it("output that is not a UUID is an internal error", async () => {
    const cs = await fake(`  isLuks) exit 0 ;;\n  luksUUID) echo "garbage"; exit 0 ;;`);
    expect((await rejection(new LUKSDisk({ device: backing, cryptsetupPath: cs }).uuid())).reason).toBe("internal");
  });
});

describe("options", () => {
  it("the constructor requires a device and checks pbkdf options", () => {
    expect(() => new LUKSDisk({ device: "" })).toThrow(/options.device is required/);
    expect(() => new LUKSDisk({ device: "/x", pbkdf: { type: "pbkdf2", iterations: -1 } })).toThrow(/pbkdf.iterations/);
    const d = new LUKSDisk({ device: "/x" });
    expect(d.initialKeyFile).toBe("/run/cryptsetup-keys.d/state.key");
  });
});
