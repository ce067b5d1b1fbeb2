#!/usr/bin/env node
// Generates the TypeScript types of proto/*.proto into src/gen/ (proto-loader-gen-types, with the
// loader options of src/rpc/proto.ts), so every handler and client is typed by the protos: renaming
// a proto field breaks tsc. The generator writes extension-less relative imports; NodeNext module
// resolution wants ".js", so they are rewritten. src/gen/ is build output (not in git). A file whose
// content did not change is left alone (its mtime too: dist/ built from it stays current).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "src", "gen");
const tmp = mkdtempSync(join(tmpdir(), "am-gen-"));
const walk = (dir) => (existsSync(dir) ? readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)])) : []);
try {
  execFileSync(
    join(root, "node_modules", ".bin", "proto-loader-gen-types"),
    ["proto/pubapi.proto", "proto/vpnapi.proto", "--longs=Number", "--enums=String", "--defaults", "--oneofs", "--grpcLib=@grpc/grpc-js", `--outDir=${tmp}`],
    { cwd: root, stdio: ["ignore", "ignore", "pipe"] },
  );
  const wanted = new Set();
  for (const file of walk(tmp)) {
    const rel = relative(tmp, file);
    wanted.add(rel);
    const text = readFileSync(file, "utf8").replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.js'");
    const dest = join(out, rel);
    if (existsSync(dest) && readFileSync(dest, "utf8") === text) continue;
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, text);
  }
  for (const file of walk(out)) if (!wanted.has(relative(out, file))) rmSync(file);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
