import { execa } from "execa";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer as netCreateServer, type AddressInfo, type Server as NetServer } from "node:net";
import { join } from "node:path";
import tls from "node:tls";

import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";

import type { Validator, Verdict } from "../../src/attestation/attestation.js";
import { buildSelfSignedCertificate, toPEM } from "../../src/atls/certificate.js";
import { createATLSChannelCredentials, type ATLSClientOptions } from "../../src/atls/client.js";
import { ATLSError, atlsReasonOf } from "../../src/atls/errors.js";
import { probeEndpoint } from "../../src/atls/probe.js";
import { createATLSServerCredentials, type ATLSServerOptions } from "../../src/atls/server.js";
import { createLogger } from "../../src/shared/logger.js";
import { TestIssuer, TestValidator, testPlatformOID, type TestIssuerOptions } from "../helpers/attestation-test.js";

// A one-method service over raw Buffers: no .proto needed.
const echoService: grpc.ServiceDefinition = {
  echo: {
    path: "/atlstest.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};
const EchoClient = grpc.makeGenericClientConstructor(echoService, "Echo");
type EchoMethod = (req: Buffer, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => void;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startGrpc(issuer: TestIssuer, options?: ATLSServerOptions): Promise<number> {
  const server = new grpc.Server();
  server.addService(echoService, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.concat([Buffer.from("echo:"), call.request])),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", createATLSServerCredentials(issuer, options), (err, p) => (err ? reject(err) : resolve(p))),
  );
  cleanups.push(() => server.forceShutdown());
  return port;
}

async function listen(server: NetServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** startPlainTLS serves a self-signed P-256 certificate without any attestation extension. */
async function startPlainTLS(): Promise<number> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const certDer = buildSelfSignedCertificate({
    commonName: "plain",
    spki: publicKey.export({ type: "spki", format: "der" }),
    privateKey,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 600_000),
    extensions: [],
  });
  const server = tls.createServer({ key: privateKey.export({ type: "pkcs8", format: "pem" }), cert: toPEM(certDer, "CERTIFICATE"), ALPNProtocols: ["h2"] });
  server.on("secureConnection", (s) => s.on("error", () => {}));
  return listen(server);
}

async function callEcho(port: number, creds: grpc.ChannelCredentials, channelOptions: grpc.ChannelOptions = {}): Promise<string> {
  const client = new EchoClient(`127.0.0.1:${port}`, creds, channelOptions);
  try {
    return await new Promise<string>((resolve, reject) =>
      (client as unknown as { echo: EchoMethod }).echo(Buffer.from("hi"), { deadline: Date.now() + 5000 }, (err, res) =>
        err ? reject(err) : resolve(res!.toString()),
      ),
    );
  } finally {
    client.close();
  }
}

const validators: Validator[] = [new TestValidator()];

describe("aTLS over gRPC", () => {
  it("completes a unary call and reports the verdict", async () => {
    const issuer = new TestIssuer();
    const port = await startGrpc(issuer);
    const verdicts: Verdict[] = [];
    const creds = createATLSChannelCredentials(validators, { requireFresh: true, onVerified: (v) => verdicts.push(v) });
    expect(await callEcho(port, creds)).toBe("echo:hi");
    expect(verdicts).toHaveLength(1);
    expect(verdicts[0].ok).toBe(true);
    expect(verdicts[0].checks.map((c) => [c.name, c.status])).toEqual([
      ["format", "passed"],
      ["signature", "passed"],
      ["nonce", "passed"],
      ["userData", "passed"],
      ["fresh marker", "passed"],
    ]);
    expect(issuer.issued).toHaveLength(1);
    expect(issuer.issued[0].nonce).toMatch(/^[0-9a-f]{64}$/);
    expect(creds.lastError).toBeUndefined();
  });

  it("uses a fresh nonce and a fresh key for every connection", async () => {
    const issuer = new TestIssuer();
    const port = await startGrpc(issuer);
    const creds = createATLSChannelCredentials(validators);
    // Separate subchannel pools force two connections through the same credentials.
    for (let i = 0; i < 2; i++) expect(await callEcho(port, creds, { "grpc.use_local_subchannel_pool": 1 })).toBe("echo:hi");
    expect(issuer.issued).toHaveLength(2);
    expect(issuer.issued[0].nonce).not.toBe(issuer.issued[1].nonce);
    expect(issuer.issued[0].userData).not.toBe(issuer.issued[1].userData);
  });

  it("logs why the server refused a handshake, without failing other connections", async () => {
    const lines: string[] = [];
    const logger = createLogger((l) => lines.push(l), { level: "debug" });
    const port = await startGrpc(new TestIssuer({ fail: new Error("tpm unavailable") }), { logger });
    await expect(callEcho(port, createATLSChannelCredentials(validators))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const warn = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === "warn");
    expect(warn).toMatchObject({ component: "atls", platform: "test", error: "issue test attestation document: tpm unavailable" });
  });

  it("accepts a non-fresh peer when freshness is not required", async () => {
    const port = await startGrpc(new TestIssuer({ fresh: false }));
    expect(await callEcho(port, createATLSChannelCredentials(validators))).toBe("echo:hi");
  });
});

interface RejectionCase {
  name: string;
  issuer?: TestIssuerOptions;
  server?: ATLSServerOptions;
  /** plain serves a certificate without an attestation extension from a raw TLS server. */
  plain?: boolean;
  client?: ATLSClientOptions;
  grpcOnly?: boolean;
  check: string;
  message: RegExp;
}

const hour = 3_600_000;
const rejections: RejectionCase[] = [
  { name: "document binds another nonce", issuer: { wrongNonce: true }, check: "nonce", message: /^aTLS: test nonce: nonce mismatch: the document binds aaaa/ },
  {
    name: "userData does not match the certificate key",
    issuer: { wrongUserData: true },
    check: "userData",
    message: /^aTLS: test userData: userData bbbb.* does not match the certificate key hash/,
  },
  { name: "document signature is bad", issuer: { badMac: true }, check: "signature", message: /^aTLS: test signature: HMAC-SHA256 .* does not verify/ },
  {
    name: "peer is not fresh but freshness is required",
    issuer: { fresh: false },
    client: { requireFresh: true },
    check: "fresh marker",
    message: /^aTLS: test fresh marker: peer is already initialized/,
  },
  {
    name: "unknown platform OID",
    issuer: { oid: "2.25.1234" },
    check: "platform",
    message: /^aTLS: unknown platform OID 2\.25\.1234 in the certificate \(this client validates: test 2\.25\.2737/,
  },
  { name: "missing extension", plain: true, check: "extension", message: /^aTLS: missing attestation extension: the certificate has no extensions/ },
  { name: "expired certificate", server: { now: () => Date.now() - hour }, check: "validity", message: /^aTLS: certificate expired at / },
  { name: "certificate not yet valid", server: { now: () => Date.now() + hour }, check: "validity", message: /^aTLS: certificate not yet valid/ },
  { name: "issuer fails", issuer: { fail: new Error("tpm unavailable") }, check: "handshake", message: /^aTLS: TLS handshake failed/ },
  {
    name: "onVerified refuses",
    client: {
      onVerified: () => {
        throw new Error("measurement not allowed");
      },
    },
    grpcOnly: true,
    check: "policy",
    message: /^aTLS: refused by policy: measurement not allowed/,
  },
];

describe("aTLS rejections name the failed check", () => {
  const start = (tc: RejectionCase): Promise<number> => (tc.plain ? startPlainTLS() : startGrpc(new TestIssuer(tc.issuer), tc.server));

  for (const tc of rejections) {
    it(`gRPC: ${tc.name} → ${tc.check}`, async () => {
      const port = await start(tc);
      const creds = createATLSChannelCredentials(validators, tc.client);
      const err = (await callEcho(port, creds).then(
        () => expect.unreachable("the call succeeded"),
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.details).toContain("Last error: aTLS: ");
      expect(atlsReasonOf(err.details)).toMatch(tc.message);
      expect(creds.lastError).toBeInstanceOf(ATLSError);
      expect(creds.lastError!.check).toBe(tc.check);
    });
  }

  for (const tc of rejections.filter((r) => !r.grpcOnly)) {
    it(`probe: ${tc.name} → ${tc.check}`, async () => {
      const port = await start(tc);
      const err = await probeEndpoint("127.0.0.1", port, validators, { requireFresh: tc.client?.requireFresh, timeoutMs: 5000 }).then(
        () => expect.unreachable("the probe succeeded"),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ATLSError);
      expect((err as ATLSError).check).toBe(tc.check);
      expect((err as ATLSError).message).toMatch(tc.message);
    });
  }
});

describe("aTLS server refuses ClientHellos without a well-formed nonce", () => {
  /** handshake connects with raw node:tls; resolves the peer certificate, or the error. */
  const handshake = (port: number, servername?: string): Promise<X509Certificate | Error> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false, ALPNProtocols: ["h2"] }, () => {
        const cert = s.getPeerX509Certificate();
        s.destroy();
        resolve(cert ?? new Error("no certificate"));
      });
      s.on("error", (e) => resolve(e));
    });

  const bad: { name: string; servername?: string }[] = [
    { name: "no SNI at all" },
    { name: "a host name", servername: "coordinator.example.com" },
    { name: "upper-case hex", servername: "AB".repeat(32) },
    { name: "63 hex characters", servername: "a".repeat(63) },
    { name: "66 hex characters", servername: "a".repeat(66) },
    { name: "non-hex characters", servername: "z".repeat(64) },
    { name: "the first version's single 64-hex-character label", servername: "a".repeat(64) },
    { name: "upper-case hex in two labels", servername: `${"AB".repeat(16)}.${"ab".repeat(16)}` },
  ];
  for (const tc of bad) {
    it(`refuses ${tc.name} without issuing`, async () => {
      const issuer = new TestIssuer();
      const port = await startGrpc(issuer);
      const got = await handshake(port, tc.servername);
      expect(got).toBeInstanceOf(Error);
      expect(issuer.issued).toEqual([]);
    });
  }

  it("accepts two 32-hex-character labels (a valid host name) and attests exactly that nonce", async () => {
    const issuer = new TestIssuer();
    const port = await startGrpc(issuer);
    const hex = "0123456789abcdef".repeat(4);
    const got = await handshake(port, `${hex.slice(0, 32)}.${hex.slice(32)}`);
    expect(got).toBeInstanceOf(X509Certificate);
    expect(issuer.issued.map((r) => r.nonce)).toEqual([hex]);
  });

  it("an independent verifier can send the nonce: Python's ssl connects with it as server_hostname", async () => {
    const issuer = new TestIssuer();
    const port = await startGrpc(issuer);
    const hex = "fedcba9876543210".repeat(4);
    // Python refuses server names that are not valid host names (the first version's single
    // 64-character label raised "label too long"); the two-label form goes through.
    const script = [
      "import socket, ssl, sys",
      "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE",
      "ctx.set_alpn_protocols(['h2'])",
      "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname=sys.argv[2])",
      "print(len(s.getpeercert(binary_form=True)))",
    ].join("\n");
    const r = await execa("python3", ["-c", script, String(port), `${hex.slice(0, 32)}.${hex.slice(32)}`], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(Number(r.stdout)).toBeGreaterThan(100);
    expect(issuer.issued.map((x) => x.nonce)).toEqual([hex]);
  });
});

describe("probeEndpoint", () => {
  it("returns the verdict and the attested certificate", async () => {
    const issuer = new TestIssuer();
    const port = await startGrpc(issuer);
    const { verdict, certificate } = await probeEndpoint("127.0.0.1", port, validators, { requireFresh: true });
    expect(verdict.ok).toBe(true);
    expect(verdict.facts.nonce).toBe(issuer.issued[0].nonce);
    expect(certificate).toMatchObject({ platform: "test", oid: testPlatformOID, userData: issuer.issued[0].userData });
    expect(new X509Certificate(certificate.pem).subject).toBe(certificate.subject);
    expect(JSON.parse(certificate.document.toString()).fresh).toBe(true);
  });

  it("says the connection was refused", async () => {
    const server = netCreateServer();
    const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err = await probeEndpoint("127.0.0.1", port, validators).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ATLSError);
    expect((err as ATLSError).check).toBe("connect");
    expect((err as ATLSError).retryable).toBe(true);
    expect((err as ATLSError).message).toBe(`aTLS: connect to 127.0.0.1:${port}: connection refused (is meshd listening there?)`);
  });

  it("times out against a server that never answers the ClientHello", async () => {
    const sockets: import("node:net").Socket[] = [];
    const server = netCreateServer((s) => sockets.push(s));
    const port = await listen(server);
    cleanups.push(() => sockets.forEach((s) => s.destroy())); // runs before the server closes
    const err = await probeEndpoint("127.0.0.1", port, validators, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ATLSError);
    expect((err as ATLSError).check).toBe("timeout");
    expect((err as ATLSError).message).toBe(`aTLS: no aTLS handshake with 127.0.0.1:${port} within 200 ms`);
  });
});

describe("the test attestation platform", () => {
  it("is never imported from src/", () => {
    const root = join(import.meta.dirname, "../../src");
    const offenders = (readdirSync(root, { recursive: true }) as string[])
      .filter((f) => f.endsWith(".ts"))
      .filter((f) => /attestation-test|test\/helpers/.test(readFileSync(join(root, f), "utf8")));
    expect(offenders).toEqual([]);
  });
});
