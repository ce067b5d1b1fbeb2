import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// DESIGN.md: the core is gRPC-free, and fakes never ship in src/.
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

describe("layering", () => {
  it("no file under src/core imports @grpc/* or etcd3", async () => {
    const offenders: string[] = [];
    for (const f of await files("src/core")) {
      const text = await readFile(f, "utf8");
      if (/from\s+["'](@grpc\/|etcd3)|require\(["'](@grpc\/|etcd3)/.test(text)) offenders.push(f);
    }
    expect(offenders).toEqual([]);
  });

  it("src/shared is a leaf: it imports nothing of ours but itself", async () => {
    const offenders: string[] = [];
    for (const f of await files("src/shared")) {
      for (const m of (await readFile(f, "utf8")).matchAll(/from\s+["'](\.[^"']*)["']/g)) if (!m[1].startsWith("./")) offenders.push(`${f}: ${m[1]}`);
    }
    expect(offenders).toEqual([]);
  });

  it("src/diskencryption and src/wireguard use no core code at run time (types only; shared shapes come from src/shared)", async () => {
    const offenders: string[] = [];
    for (const f of [...(await files("src/diskencryption")), ...(await files("src/wireguard"))]) {
      for (const m of (await readFile(f, "utf8")).matchAll(/^import (?!type )[^;]*from\s+["'](\.\.\/core\/[^"']*)["']/gm)) offenders.push(`${f}: ${m[1]}`);
    }
    expect(offenders).toEqual([]);
  });

  it("no file under src imports test helpers", async () => {
    const offenders: string[] = [];
    for (const f of await files("src")) if (/from\s+["'][./]*test\//.test(await readFile(f, "utf8"))) offenders.push(f);
    expect(offenders).toEqual([]);
  });
});
