import { InternalError, ResourceExhaustedError } from "./errors.js";
import type { Transaction } from "./store.js";

/** vpnNetwork is the VPN's address range (DESIGN.md). */
export const vpnNetwork = { base: "10.118.0.0", prefixLength: 16 } as const;

/** IPPool is a contiguous range of VPN addresses handed out by the Coordinators. */
export interface IPPool {
  name: string;
  /** first and last are offsets from the VPN network's base address, inclusive. */
  first: number;
  last: number;
}

/** coordinatorPool: 10.118.0.1 – 10.118.0.10. */
export const coordinatorPool: IPPool = { name: "coordinators", first: 1, last: 10 };
/** nodePool: 10.118.0.11 – 10.118.255.254 (Nodes and admins). */
export const nodePool: IPPool = { name: "nodes", first: 11, last: 65534 };

/** ipOf renders the VPN address at `offset` from the network base. */
export function ipOf(offset: number): string {
  return `10.118.${offset >> 8}.${offset & 255}`;
}

/** offsetOf returns the offset of a VPN address, or undefined when it is not in 10.118.0.0/16. */
export function offsetOf(ip: string): number | undefined {
  const m = /^10\.118\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const hi = Number(m[1]);
  const lo = Number(m[2]);
  if (hi > 255 || lo > 255) return undefined;
  return (hi << 8) | lo;
}

/** inPool says whether ip belongs to pool. */
export function inPool(pool: IPPool, ip: string): boolean {
  const o = offsetOf(ip);
  return o !== undefined && o >= pool.first && o <= pool.last;
}

const nextKey = (pool: IPPool): string => `ippool/${pool.name}/next`;
const freedPrefix = (pool: IPPool): string => `ippool/${pool.name}/freed/`;

/**
 * allocateIP takes the lowest released address of pool, else the next never-used one, inside the
 * caller's transaction: two concurrent allocations conflict on the pool's keys, so one of them is
 * retried and an address is never handed out twice.
 */
export async function allocateIP(tx: Transaction, pool: IPPool): Promise<string> {
  const freed = await tx.list(freedPrefix(pool));
  if (freed.length > 0) {
    const [key] = freed.sort((a, b) => Number(a[0].slice(a[0].lastIndexOf("/") + 1)) - Number(b[0].slice(b[0].lastIndexOf("/") + 1)))[0];
    tx.delete(key);
    return ipOf(Number(key.slice(key.lastIndexOf("/") + 1)));
  }
  const raw = await tx.get(nextKey(pool));
  const next = raw === undefined ? pool.first : Number(Buffer.from(raw).toString());
  if (!Number.isInteger(next)) throw new InternalError(`ip pool ${pool.name}: corrupt counter`);
  if (next > pool.last) {
    throw new ResourceExhaustedError(`ip pool ${pool.name}: exhausted (all of ${ipOf(pool.first)} to ${ipOf(pool.last)} are in use)`);
  }
  tx.put(nextKey(pool), Buffer.from(String(next + 1)));
  return ipOf(next);
}

/** releaseIP returns ip to its pool inside the caller's transaction. */
export function releaseIP(tx: Transaction, pool: IPPool, ip: string): void {
  const o = offsetOf(ip);
  if (o === undefined || o < pool.first || o > pool.last) throw new InternalError(`ip pool ${pool.name}: ${ip} is not in the pool`);
  tx.put(`${freedPrefix(pool)}${o}`, Buffer.from("1"));
}
