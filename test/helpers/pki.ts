/**
 * A throwaway PKI made with the openssl CLI for TLS tests: a CA, a server certificate for
 * 127.0.0.1 and a client certificate, each P-256, valid for one day, in a temp dir the caller removes.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

/** CertFiles are PEM file paths of one certificate and its key. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** TestPKI is one CA with a server and a client certificate it signed. */
export interface TestPKI {
  dir: string;
  /** ca is the CA certificate (PEM). */
  ca: string;
  server: CertFiles;
  client: CertFiles;
}

const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function openssl(dir: string, args: string[]): Promise<void> {
  await execa("openssl", args, { cwd: dir, stdin: "ignore" });
}

async function issue(dir: string, name: string, subject: string, extensions: string, ca: string): Promise<CertFiles> {
  await writeFile(join(dir, `${name}.ext`), extensions);
  await openssl(dir, ["req", ...ecKey, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
  await openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`]);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/** makeTestPKI makes a CA named `name` and its certificates in a fresh temp dir (or in `dir`). */
export async function makeTestPKI(name = "test", dir?: string): Promise<TestPKI> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), "am-pki-")));
  const ca = `${name}-ca`;
  await openssl(d, ["req", "-x509", ...ecKey, "-keyout", `${ca}.key`, "-out", `${ca}.pem`, "-days", "1", "-subj", `/CN=${name} CA`]);
  const server = await issue(d, `${name}-server`, "/CN=etcd", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n", ca);
  const client = await issue(d, `${name}-client`, "/CN=coordinator", "extendedKeyUsage=clientAuth\n", ca);
  return { dir: d, ca: join(d, `${ca}.pem`), server, client };
}
