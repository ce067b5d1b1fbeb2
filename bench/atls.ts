// aTLS handshake (simulated TPM: a real TPM quote from swtpm per handshake) vs a plain TLS
// handshake with a P-256 self-signed certificate, measured side by side in one run.
import { generateKeyPairSync } from "node:crypto";
import { connect as netConnect, type AddressInfo } from "node:net";
import { createServer, connect as tlsConnect, type TlsOptions } from "node:tls";
import { openTPM } from "../src/attestation/tpm-issuer.js";
import { createTPMValidator } from "../src/attestation/tpm-validator.js";
import { buildSelfSignedCertificate, toPEM } from "../src/atls/certificate.js";
import { createATLSServerCredentials } from "../src/atls/server.js";
import { attestedHandshake } from "../src/atls/handshake.js";
import { startSwtpm, swtpmPolicy } from "../test/helpers/swtpm.js";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** benchATLS returns the median aTLS and plain TLS handshake times and their ratio. */
export async function benchATLS(rounds = 40): Promise<Record<string, number>> {
  const swtpm = await startSwtpm();
  const issuer = await openTPM(swtpm.tcti);
  const validators = [createTPMValidator(swtpmPolicy())];
  // aTLS server: meshd's own server options (fresh key, quote and certificate per handshake).
  const creds = createATLSServerCredentials(issuer);
  const atls = createServer({ ...(creds._getConstructorOptions() as TlsOptions), ALPNProtocols: undefined });
  // Plain TLS server with one P-256 self-signed certificate (same key size, no attestation).
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const der = buildSelfSignedCertificate({
    commonName: "plain",
    spki: publicKey.export({ type: "spki", format: "der" }),
    privateKey,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [],
  });
  const plain = createServer({ minVersion: "TLSv1.3", key: privateKey.export({ type: "pkcs8", format: "pem" }), cert: toPEM(der, "CERTIFICATE") });
  const listen = (s: ReturnType<typeof createServer>) => new Promise<number>((r) => s.listen(0, "127.0.0.1", () => r((s.address() as AddressInfo).port)));
  const atlsPort = await listen(atls);
  const plainPort = await listen(plain);
  atls.on("secureConnection", (s) => s.end());
  plain.on("secureConnection", (s) => s.end());

  const oneATLS = async (): Promise<number> => {
    const t0 = performance.now();
    const sock = netConnect({ host: "127.0.0.1", port: atlsPort });
    await new Promise((r, j) => sock.once("connect", r).once("error", j));
    const conn = await attestedHandshake(sock, { validators });
    const ms = performance.now() - t0;
    conn.socket.destroy();
    return ms;
  };
  const onePlain = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const s = tlsConnect({ host: "127.0.0.1", port: plainPort, servername: "plain", rejectUnauthorized: false, minVersion: "TLSv1.3" }, () => {
        const ms = performance.now() - t0;
        s.destroy();
        resolve(ms);
      });
      s.once("error", reject);
    });
  try {
    for (let i = 0; i < 3; i++) {
      await oneATLS();
      await onePlain();
    }
    const a: number[] = [];
    const p: number[] = [];
    for (let i = 0; i < rounds; i++) {
      a.push(await oneATLS());
      p.push(await onePlain());
    }
    return {
      atls_handshake_ms: +median(a).toFixed(2),
      plain_tls_handshake_ms: +median(p).toFixed(2),
      atls_vs_plain_tls_ratio: +(median(a) / median(p)).toFixed(1),
    };
  } finally {
    atls.close();
    plain.close();
    await issuer.close();
    await swtpm.stop();
  }
}
