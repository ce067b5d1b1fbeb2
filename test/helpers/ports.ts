import { createServer, type AddressInfo } from "node:net";

/** handedOut holds every port freePort gave this process: never given twice (the kernel may hand a just-released port to the next bind). */
const handedOut = new Set<number>();

/**
 * freePort asks the OS for a free loopback port, one this process was not given before. Whoever
 * binds it later still races other processes for it; callers retry on EADDRINUSE where that matters.
 * Regression: the 100-Node activation bench gave two peers one port (EADDRINUSE at bind).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("freePort: the OS kept handing out ports this process already has");
}
