import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** protoDir finds proto/ from this module, whether it runs from src/ (tests) or dist/src/ (built). */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  const tried: string[] = [];
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "proto");
    tried.push(candidate);
    if (existsSync(join(candidate, "pubapi.proto"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`proto files not found; tried ${tried.join(", ")}`);
}

const loaderOptions: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

let cache: grpc.GrpcObject | undefined;

/** loadProtos loads pubapi.proto and vpnapi.proto once per process. */
export function loadProtos(): grpc.GrpcObject {
  if (!cache) {
    const dir = protoDir();
    const def = protoLoader.loadSync([join(dir, "pubapi.proto"), join(dir, "vpnapi.proto")], { ...loaderOptions, includeDirs: [dir] });
    cache = grpc.loadPackageDefinition(def);
  }
  return cache;
}

/** serviceOf returns a service client constructor (with its .service definition) by package and name. */
export function serviceOf(pkg: "pubapi" | "vpnapi"): grpc.ServiceClientConstructor {
  const root = loadProtos() as unknown as { attestedmesh: Record<string, { API: grpc.ServiceClientConstructor }> };
  return root.attestedmesh[pkg].API;
}

/** AdminMethod names every admin-signed RPC. */
export type AdminMethod = "ActivateAdditionalNodes" | "RemoveNode" | "RemoveCoordinator" | "ActivateAdditionalCoordinator";

/** AdminPayloadCodec (de)serializes one admin RPC's payload exactly as the proto defines it. */
export interface AdminPayloadCodec<T> {
  serialize(payload: T): Buffer;
  deserialize(bytes: Buffer): T;
}

/**
 * adminPayloadCodec returns the codec of the payload an AdminRequest carries for `method`, from the
 * never-served AdminPayloads service of pubapi.proto (so both ends share the generated encoding).
 */
export function adminPayloadCodec<T>(method: AdminMethod): AdminPayloadCodec<T> {
  const root = loadProtos() as unknown as { attestedmesh: { pubapi: { AdminPayloads: grpc.ServiceClientConstructor } } };
  const def = root.attestedmesh.pubapi.AdminPayloads.service[method];
  return { serialize: (p: T) => def.requestSerialize(p), deserialize: (b: Buffer) => def.requestDeserialize(b) as T };
}

/** maxMessageBytes bounds every message either API accepts (a 1,000-peer update is ~150 KiB). */
export const maxMessageBytes = 4 * 1024 * 1024;

/** channelOptions are the grpc-js options of every channel we open. */
export const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": maxMessageBytes,
  "grpc.max_send_message_length": maxMessageBytes,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
};
