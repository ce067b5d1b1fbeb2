import { describe, expect, it } from "vitest";
import { parseMeshdFlags, tctiOf } from "../../src/cmd/flags.js";

describe("meshd flags", () => {
  it("defaults follow DESIGN.md", () => {
    const r = parseMeshdFlags(["--public-ip", "192.0.2.7"]);
    if (r.help) throw new Error("help");
    expect(r.config).toMatchObject({
      listenHost: "0.0.0.0",
      listenPort: 9000,
      publicIP: "192.0.2.7",
      stateDir: "/var/lib/meshd",
      vpn: "auto",
      wgInterface: "wg0",
      wgPort: 51820,
      tcti: "device:/dev/tpmrm0",
      snp: "device",
      diskInitialKey: "/run/cryptsetup-keys.d/state.key",
      store: { kind: "memory" },
      updateIntervalMs: 10_000,
      insecureStateDir: false,
    });
  });

  it("--insecure-state-dir is an explicit opt-in", () => {
    const r = parseMeshdFlags(["--public-ip", "192.0.2.7", "--insecure-state-dir"]);
    if (r.help) throw new Error("help");
    expect(r.config.insecureStateDir).toBe(true);
  });

  it("TLS to etcd with a client certificate, any endpoint", () => {
    const r = parseMeshdFlags(["--public-ip", "192.0.2.7", "--store", "etcd://198.18.0.5:2379", "--etcd-ca", "/c/ca.pem", "--etcd-cert", "/c/me.pem", "--etcd-key", "/c/me.key"]);
    if (r.help) throw new Error("help");
    expect(r.config.store).toEqual({ kind: "etcd", endpoints: ["198.18.0.5:2379"], tls: { caFile: "/c/ca.pem", certFile: "/c/me.pem", keyFile: "/c/me.key" } });
  });

  it("parses swtpm and etcd endpoints", () => {
    expect(tctiOf("swtpm:127.0.0.1:2321")).toBe("swtpm:host=127.0.0.1,port=2321");
    const r = parseMeshdFlags(["--listen", "10.0.0.5:9000", "--store", "etcd://127.0.0.1:2379,127.0.0.2:2379"]);
    if (r.help) throw new Error("help");
    expect(r.config.publicIP).toBe("10.0.0.5");
    expect(r.config.store).toEqual({ kind: "etcd", endpoints: ["127.0.0.1:2379", "127.0.0.2:2379"] });
  });

  const bad = [
    { argv: ["--listen", "0.0.0.0:9000"], msg: "--public-ip is required" },
    { argv: ["--listen", "host.example:9000"], msg: "--listen: HOST must be an IP address" },
    { argv: ["--listen", "10.0.0.1:99999"], msg: "--listen: port must be 1-65535" },
    { argv: ["--public-ip", "1.2.3.4", "--vpn", "tun"], msg: '--vpn: must be kernel or userspace or auto, got "tun"' },
    { argv: ["--public-ip", "1.2.3.4", "--attestation", "sgx"], msg: "--attestation: must be tpm or snp" },
    { argv: ["--public-ip", "1.2.3.4", "--tpm", "swtpm"], msg: "--tpm: must be device or swtpm:HOST:PORT" },
    { argv: ["--public-ip", "1.2.3.4", "--store", "redis://x"], msg: "--store: must be memory or etcd://" },
    { argv: ["--public-ip", "1.2.3.4", "--wg-interface", "a-name-that-is-too-long"], msg: "--wg-interface" },
    { argv: ["--public-ip", "1.2.3.4", "--update-interval", "0"], msg: "--update-interval" },
    { argv: ["--public-ip", "not-ip"], msg: "--public-ip: not an IP address" },
    { argv: ["--public-ip", "1.2.3.4", "extra"], msg: 'unexpected argument "extra"' },
    { argv: ["--public-ip", "1.2.3.4", "--store", "etcd://198.18.0.5:2379"], msg: "--store: plaintext etcd only on loopback; 198.18.0.5:2379 needs TLS: give --etcd-ca" },
    { argv: ["--public-ip", "1.2.3.4", "--store", "etcd://127.0.0.1:2379,etcd.example:2379"], msg: "etcd.example:2379 needs TLS" },
    { argv: ["--public-ip", "1.2.3.4", "--store", "etcd://198.18.0.5:2379", "--etcd-ca", "ca", "--etcd-cert", "c"], msg: "--etcd-cert and --etcd-key: give both or neither" },
    { argv: ["--public-ip", "1.2.3.4", "--store", "etcd://127.0.0.1:2379", "--etcd-cert", "c", "--etcd-key", "k"], msg: "--etcd-cert/--etcd-key need --etcd-ca" },
    { argv: ["--public-ip", "1.2.3.4", "--etcd-ca", "ca"], msg: "only with --store etcd://" },
  ];
  for (const tc of bad) it(`refuses ${tc.argv.join(" ")}`, () => expect(() => parseMeshdFlags(tc.argv)).toThrow(tc.msg));
});
