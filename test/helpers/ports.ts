import { createServer } from "node:net";

/** handedOut holds every port freePort gave this process: never given twice. */
const handedOut = new Set<number>();

/**
 * Ports come from below Linux's ephemeral range (32768-60999 by default), so that no outgoing
 * connection of this or another process is given the port between freePort and the bind. Regression:
 * the 100-Node activation bench took free ports from the OS (bind to port 0, release), and a gRPC
 * client's connection took one of them before its peer bound it (EADDRINUSE).
 */
const low = 20_000;
const high = 32_767;
let next = low + Math.floor(Math.random() * (high - low));

const canListen = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
  });

/**
 * freePort returns a loopback port that is free now and that this process was not given before.
 * Another process may still bind it first; callers retry on EADDRINUSE where that matters.
 */
export function freePort(): Promise<number> {
  return freePorts(1);
}

/** freePortPair returns a port P like freePort whose neighbour P+1 is free too (swtpm: command and control port); both are taken. */
export function freePortPair(): Promise<number> {
  return freePorts(2);
}

async function freePorts(n: 1 | 2): Promise<number> {
  for (let i = 0; i <= high - low; i++) {
    const port = next;
    next = next + n > high ? low : next + n;
    const ports = n === 1 ? [port] : [port, port + 1];
    if (ports.some((p) => handedOut.has(p))) continue;
    if ((await canListen(port)) && (n === 1 || (await canListen(port + 1)))) {
      for (const p of ports) handedOut.add(p);
      return port;
    }
  }
  throw new Error(`freePort: no ${n === 1 ? "free port" : "two adjacent free ports"} left in ${low}-${high} on 127.0.0.1`);
}
