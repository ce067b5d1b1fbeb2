import { formatEndpoint, parseEndpoint } from "../core/validate.js";

/** pubapiDefaultPort is the pubapi's port when an endpoint names none (DESIGN.md). */
export const pubapiDefaultPort = 9000;

/** endpointFlag parses HOST[:PORT] of a flag, defaulting the port to 9000, and returns HOST:PORT. */
export function endpointFlag(value: string, flag: string, defaultPort = pubapiDefaultPort): string {
  return formatEndpoint(parseEndpoint(value, flag, defaultPort));
}
