// meshd's metrics (issue 13): --metrics-listen is loopback or the VPN IP (vpn:PORT), GET /metrics serves Prometheus text
// and nothing else, verdicts count by platform and failed check, the store wrapper times round
// trips and counts failures (not conflicts) without changing results, core events land in metrics.
import { describe, expect, it } from "vitest";
import type { Validator } from "../../src/attestation/attestation.js";
import { parseMeshdFlags } from "../../src/cmd/flags.js";
import { ConflictError, UnavailableError } from "../../src/core/errors.js";
import { nullLogger } from "../../src/shared/logger.js";
import { MemoryStore } from "../../src/store/store-memory.js";
import type { Store } from "../../src/core/store.js";
import { MeshMetrics, serveMetrics, type MeshView } from "../../src/metrics/metrics.js";

const view: MeshView = {
  state: () => "IsNode",
  resourceVersion: () => 5,
  peersByRole: async () => ({ coordinator: 1, node: 2, admin: 1 }),
  openStreams: () => 2,
};

async function text(m: MeshMetrics): Promise<string> {
  return m.registry.metrics();
}

describe("meshd --metrics-listen", () => {
  it("takes a loopback HOST:PORT and is off by default", () => {
    const on = parseMeshdFlags(["--public-ip", "192.0.2.7", "--metrics-listen", "127.0.0.1:9100"]);
    const off = parseMeshdFlags(["--public-ip", "192.0.2.7"]);
    if (on.help || off.help) throw new Error("help");
    expect(on.config.metricsListen).toEqual({ host: "127.0.0.1", port: 9100 });
    expect(off.config.metricsListen).toBeUndefined();
  });
  it(`takes "vpn:PORT": the peer's VPN IP once it has one (WireGuard only)`, () => {
    const on = parseMeshdFlags(["--public-ip", "192.0.2.7", "--metrics-listen", "vpn:9101"]);
    if (on.help) throw new Error("help");
    expect(on.config.metricsListen).toEqual({ host: "vpn", port: 9101 });
  });
  for (const bad of ["0.0.0.0:9100", "198.18.0.2:9100", "10.118.0.1:9100", "localhost:9100", "127.0.0.1:70000", "vpn:0", "VPN:9100"]) {
    it(`refuses ${bad}`, () => {
      expect(() => parseMeshdFlags(["--public-ip", "192.0.2.7", "--metrics-listen", bad])).toThrow(/--metrics-listen/);
    });
  }
});

describe("MeshMetrics", () => {
  it("scrape-time gauges read the peer: state, version, peers by role, open streams", async () => {
    const t = await text(new MeshMetrics(view));
    expect(t).toContain('meshd_peer_state{state="IsNode"} 1');
    expect(t).toContain("meshd_resource_version 5");
    expect(t).toContain('meshd_peers{role="node"} 2');
    expect(t).toContain("meshd_open_streams 2");
  });

  it("core events, polls and handshakes are counted", async () => {
    const m = new MeshMetrics(view);
    m.events.propagation?.(120);
    m.events.propagation?.(80);
    m.events.diskKey?.("released");
    m.events.diskKey?.("refused");
    m.events.activation?.("node", "ok", 1500);
    m.poll();
    m.handshake("refused", "sni nonce");
    const t = await text(m);
    expect(t).toContain("meshd_propagation_seconds_count 2");
    expect(t).toContain('meshd_propagation_seconds_bucket{le="0.1"} 1');
    expect(t).toContain('meshd_disk_key_requests_total{result="refused"} 1');
    expect(t).toContain('meshd_activation_seconds_count{role="node",result="ok"} 1');
    expect(t).toContain("meshd_polls_total 1");
    expect(t).toContain('meshd_atls_handshakes_total{result="refused",check="sni nonce"} 1');
  });

  it("wrapped validators count each verdict by platform, result and first failed check, and return it unchanged", async () => {
    const m = new MeshMetrics(view);
    const verdict = { platform: "tpm", ok: false, checks: [{ name: "quote signature", status: "passed" as const }, { name: "ak anchoring", status: "failed" as const, detail: "x" }], facts: {} };
    const inner: Validator = { platform: "tpm", oid: "1.2.3", validate: async () => verdict };
    const [wrapped] = m.validators([inner]);
    expect(await wrapped.validate(new Uint8Array(1), {})).toBe(verdict);
    expect(wrapped.oid).toBe("1.2.3");
    expect(await text(m)).toContain('meshd_attestation_verdicts_total{platform="tpm",result="failed",check="ak anchoring"} 1');
  });

  it("the store wrapper keeps results and errors, times round trips, counts failures but not conflicts", async () => {
    const m = new MeshMetrics(view);
    const store = m.store(await MemoryStore.open());
    const tx = await store.begin();
    tx.put("a", Buffer.from("1"));
    await tx.commit();
    expect(Buffer.from((await store.get("a"))!).toString()).toBe("1");
    const failing: Store = {
      get: async () => {
        throw new UnavailableError("etcd: no leader");
      },
      list: async () => [],
      begin: async () => ({ get: async () => undefined, list: async () => [], put: () => {}, delete: () => {}, rollback: () => {}, commit: async () => { throw new ConflictError("changed"); } }),
      close: async () => {},
    };
    const w = m.store(failing);
    await expect(w.get("x")).rejects.toBeInstanceOf(UnavailableError);
    await expect((await w.begin()).commit()).rejects.toBeInstanceOf(ConflictError);
    const t = await text(m);
    expect(t).toMatch(/meshd_store_seconds_count\{op="commit"\} 2/);
    expect(t).toContain('meshd_store_errors_total{op="get"} 1');
    expect(t).not.toContain('meshd_store_errors_total{op="commit"}');
  });

  it("serves GET /metrics and 404 for anything else", async () => {
    const m = new MeshMetrics(view);
    const served = await serveMetrics(m, "127.0.0.1", 0, nullLogger);
    try {
      const ok = await fetch(`http://127.0.0.1:${served.port}/metrics`);
      expect(ok.status).toBe(200);
      expect(ok.headers.get("content-type")).toMatch(/^text\/plain/);
      expect(await ok.text()).toContain("meshd_peer_state");
      expect((await fetch(`http://127.0.0.1:${served.port}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${served.port}/metrics`, { method: "POST" })).status).toBe(404);
    } finally {
      await served.close();
    }
  });
});

describe("deploy/grafana-dashboard.json", () => {
  it("is a Grafana dashboard whose every query names only metrics meshd exports", async () => {
    const { readFileSync } = await import("node:fs");
    const d = JSON.parse(readFileSync(new URL("../../deploy/grafana-dashboard.json", import.meta.url), "utf8")) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    const m = new MeshMetrics(view);
    m.poll();
    const exported = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name));
    const families = (name: string): string => name.replace(/_(bucket|count|sum)$/, "");
    expect(d.panels.length).toBeGreaterThan(5);
    for (const p of d.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) {
        const names = [...t.expr.matchAll(/\bmeshd_[a-z_]+/g)].map((x) => families(x[0]));
        expect(names.length, t.expr).toBeGreaterThan(0);
        for (const n of names) expect(exported.has(n), `${p.title}: ${n}`).toBe(true);
      }
    }
    // Every metric meshd exports is on the dashboard.
    const used = new Set(d.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\bmeshd_[a-z_]+/g)].map((x) => families(x[0])))));
    for (const n of exported) expect(used.has(n), n).toBe(true);
  });
});
