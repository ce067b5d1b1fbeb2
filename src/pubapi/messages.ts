/**
 * The pubapi messages as the code receives them: the types generated from proto/pubapi.proto
 * (src/gen, `npm run gen:proto`), decoded with the loader options of rpc/proto.ts (camelCase
 * fields, bytes as Buffer, defaults filled, oneofs named). Nothing here is written by hand: a
 * renamed proto field breaks every use at compile time.
 */
export type { ActivateAsNodeInitialRequest__Output as WireInitialRequest } from "../gen/attestedmesh/pubapi/ActivateAsNodeInitialRequest.js";
export type { ActivationResult__Output as WireActivationResult } from "../gen/attestedmesh/pubapi/ActivationResult.js";
export type { AdminConfig__Output as WireAdminConfig } from "../gen/attestedmesh/pubapi/AdminConfig.js";
export type { AdminRequest__Output as WireAdminRequest } from "../gen/attestedmesh/pubapi/AdminRequest.js";
export type { CallerProof__Output as WireCallerProof } from "../gen/attestedmesh/pubapi/CallerProof.js";
export type { NodeFailure__Output as WireFailure } from "../gen/attestedmesh/pubapi/NodeFailure.js";
export type { APIClient as PubAPIGrpcClient, APIHandlers as PubAPIHandlers } from "../gen/attestedmesh/pubapi/API.js";
