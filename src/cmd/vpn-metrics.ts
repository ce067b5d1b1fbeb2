import { errorMessage } from "../core/errors.js";
import { serveMetrics, type MeshMetrics } from "../metrics/metrics.js";
import type { Logger } from "../shared/logger.js";
import { VPNAPIFilter } from "../wireguard/vpnapi-filter.js";

/** VPNMetricsServer serves Prometheus metrics on the peer's VPN IP (meshd --metrics-listen vpn:PORT). */
export interface VPNMetricsServer {
  /**
   * serveOn starts serving on vpnIP:port once the VPN IP is set (again after a restart; the same IP
   * twice is a no-op): first the nftables filter that admits the port only from WireGuard, then the
   * listener. It never throws: without its filter nothing listens, and the error is logged (metrics
   * must not fail an activation).
   */
  serveOn(vpnIP: string): Promise<void>;
  /** close stops the listener and removes the filter. */
  close(): Promise<void>;
}

/**
 * vpnMetricsServer returns the metrics server of --metrics-listen vpn:PORT. Linux accepts packets for
 * a local address on any interface, so a listener on the VPN IP alone would be reachable from the
 * public network by anyone who routes the VPN IP via this host; the filter closes that, as it does
 * for the vpnapi (a table of its own: `meshd_metrics_<interface>`).
 */
export function vpnMetricsServer(metrics: MeshMetrics, wgInterface: string, port: number, logger: Logger): VPNMetricsServer {
  let servedOn: string | undefined;
  const closers: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch((err: unknown) => logger.warn("metrics: shutdown step failed", { error: errorMessage(err) }));
  };
  return {
    serveOn: async (vpnIP) => {
      if (servedOn === vpnIP) return;
      await close();
      servedOn = undefined;
      try {
        const filter = await VPNAPIFilter.install({ wgInterface, vpnIP, port, service: "metrics", logger });
        closers.push(() => filter.remove());
        const served = await serveMetrics(metrics, vpnIP, port, logger);
        closers.push(() => served.close());
        servedOn = vpnIP;
        logger.info("serving Prometheus metrics on the VPN IP (WireGuard only)", { address: `http://${vpnIP}:${port}/metrics` });
      } catch (err) {
        await close();
        logger.error("metrics are NOT served on the VPN IP", { address: `${vpnIP}:${port}`, error: errorMessage(err) });
      }
    },
    close,
  };
}
