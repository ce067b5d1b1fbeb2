#!/usr/bin/env node
// Generates the TypeScript types of proto/*.proto into src/gen/ (proto-loader-gen-types, with the
// loader options of src/rpc/proto.ts), so every handler and client is typed by the protos: renaming
// a proto field breaks tsc. The generator writes extension-less relative imports; NodeNext module
// resolution wants ".js", so they are rewritten. src/gen/ is build output (not in git).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "src", "gen");
rmSync(out, { recursive: true, force: true });
execFileSync(
  join(root, "node_modules", ".bin", "proto-loader-gen-types"),
  ["proto/pubapi.proto", "proto/vpnapi.proto", "--longs=Number", "--enums=String", "--defaults", "--oneofs", "--grpcLib=@grpc/grpc-js", `--outDir=${out}`],
  { cwd: root, stdio: ["ignore", "ignore", "pipe"] },
);
const walk = (dir) => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]));
for (const file of walk(out)) {
  const text = readFileSync(file, "utf8").replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.js'");
  writeFileSync(file, text);
}
