import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ProtoGrpcType as PubProto } from "../gen/pubapi.js";
import type { ProtoGrpcType as VPNProto } from "../gen/vpnapi.js";

/**
 * Protos is the loaded package tree, typed by the types generated from proto/ (src/gen, made by
 * `npm run gen:proto` in the build): a renamed proto field breaks tsc wherever it is used.
 */
export type Protos = { attestedmesh: PubProto["attestedmesh"] & VPNProto["attestedmesh"] };

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

let cache: Protos | undefined;

/**
 * loadProtos loads pubapi.proto and vpnapi.proto once per process. The generated types describe
 * what grpc-js builds from them with loaderOptions (the generator runs with the same options); this
 * is the one place the untyped package object is given that type.
 */
export function loadProtos(): Protos {
  if (!cache) {
    const dir = protoDir();
    const def = protoLoader.loadSync([join(dir, "pubapi.proto"), join(dir, "vpnapi.proto")], { ...loaderOptions, includeDirs: [dir] });
    cache = grpc.loadPackageDefinition(def) as unknown as Protos;
  }
  return cache;
}

/** pubapiService is the pubapi client constructor (with its .service definition). */
export const pubapiService = (): Protos["attestedmesh"]["pubapi"]["API"] => loadProtos().attestedmesh.pubapi.API;

/** vpnapiService is the vpnapi client constructor (with its .service definition). */
export const vpnapiService = (): Protos["attestedmesh"]["vpnapi"]["API"] => loadProtos().attestedmesh.vpnapi.API;

/** AdminMethod names every admin-signed RPC. */
export type AdminMethod = "ActivateAdditionalNodes" | "RemoveNode" | "RemoveCoordinator" | "ActivateAdditionalCoordinator";

type PayloadDefinitions = Protos["attestedmesh"]["pubapi"]["AdminPayloads"]["service"];

/** AdminPayloadIn is the payload message an AdminRequest for method M carries, as the sender builds it. */
export type AdminPayloadIn<M extends AdminMethod> = Parameters<PayloadDefinitions[M]["requestSerialize"]>[0];
/** AdminPayload is the payload message an AdminRequest for method M carries, as decoded. */
export type AdminPayload<M extends AdminMethod> = ReturnType<PayloadDefinitions[M]["requestDeserialize"]>;

/** AdminPayloadCodec (de)serializes one admin RPC's payload exactly as the proto defines it. */
export interface AdminPayloadCodec<M extends AdminMethod> {
  serialize(payload: AdminPayloadIn<M>): Buffer;
  deserialize(bytes: Buffer): AdminPayload<M>;
}

/**
 * adminPayloadCodec returns the codec of the payload an AdminRequest carries for `method`, from the
 * never-served AdminPayloads service of pubapi.proto (so both ends share the generated encoding).
 */
export function adminPayloadCodec<M extends AdminMethod>(method: M): AdminPayloadCodec<M> {
  const def = loadProtos().attestedmesh.pubapi.AdminPayloads.service[method];
  return {
    serialize: (payload) => (def.requestSerialize as (p: AdminPayloadIn<M>) => Buffer)(payload),
    deserialize: (bytes) => (def.requestDeserialize as (b: Buffer) => AdminPayload<M>)(bytes),
  };
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
