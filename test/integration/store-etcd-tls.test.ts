import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterStore } from "../../src/core/cluster-store.js";
import { checkEtcdTransport, type EtcdTLS } from "../../src/store/etcd-tls.js";
import { EtcdStore } from "../../src/store/store-etcd.js";
import { startEtcd, type Etcd } from "../helpers/etcd.js";
import { makeTestPKI, type TestPKI } from "../helpers/pki.js";

/** A real etcd serving clients over TLS only, with --client-cert-auth; certificates from the openssl CLI. */
describe("etcd store over TLS with client certificates (real etcd)", () => {
  let pki: TestPKI;
  let rogue: TestPKI;
  let etcd: Etcd;
  const read = (f: string): Buffer => readFileSync(f);
  const stores: EtcdStore[] = [];

  beforeAll(async () => {
    pki = await makeTestPKI("mesh");
    rogue = await makeTestPKI("rogue", undefined);
    etcd = await startEtcd({ tls: { ca: pki.ca, cert: pki.server.cert, key: pki.server.key, client: pki.client } });
  }, 60_000);
  afterAll(async () => {
    for (const s of stores) await s.close();
    await etcd?.stop();
    for (const p of [pki, rogue]) if (p) await rm(p.dir, { recursive: true, force: true });
  });

  async function open(tls: EtcdTLS | undefined): Promise<EtcdStore> {
    const s = await EtcdStore.open({ endpoints: [etcd.endpoint], ...(tls ? { tls } : {}), dialTimeoutMs: 2000, namespace: `tls-${Math.random().toString(36).slice(2)}/` });
    stores.push(s);
    return s;
  }

  it("with the CA and a client certificate the Coordinator stores and reads its secrets", async () => {
    const cs = new ClusterStore(await open({ ca: read(pki.ca), cert: read(pki.client.cert), key: read(pki.client.key) }));
    const secrets = { masterSecret: Buffer.alloc(32, 7), clusterID: Buffer.alloc(32, 9) };
    await cs.putSecrets(secrets);
    expect(await cs.secrets()).toEqual(secrets);
  });

  const refused = [
    { name: "plaintext", tls: (): EtcdTLS | undefined => undefined },
    { name: "TLS without a client certificate", tls: (): EtcdTLS | undefined => ({ ca: read(pki.ca) }) },
    { name: "a client certificate of another CA", tls: (): EtcdTLS | undefined => ({ ca: read(pki.ca), cert: read(rogue.client.cert), key: read(rogue.client.key) }) },
    { name: "a server certificate not signed by the given CA", tls: (): EtcdTLS | undefined => ({ ca: read(rogue.ca), cert: read(pki.client.cert), key: read(pki.client.key) }) },
  ];
  for (const tc of refused) {
    it(`refuses to connect with ${tc.name}`, async () => {
      await expect(open(tc.tls())).rejects.toThrow(/etcd store/);
    });
  }

  const transport = [
    { name: "plaintext to a loopback endpoint is allowed", endpoints: ["127.0.0.1:2379", "localhost:2379", "[::1]:2379"], tls: undefined, ok: true },
    { name: "plaintext to a remote endpoint is refused", endpoints: ["127.0.0.1:2379", "198.18.0.5:2379"], tls: undefined, ok: false },
    { name: "plaintext to a remote http:// endpoint is refused", endpoints: ["http://10.0.0.1:2379"], tls: undefined, ok: false },
    { name: "TLS with a client certificate to a remote endpoint is allowed", endpoints: ["198.18.0.5:2379"], tls: { ca: Buffer.from("x"), cert: Buffer.from("y"), key: Buffer.from("z") }, ok: true },
    { name: "TLS without a client certificate to a remote endpoint is refused (review: etcd without client-cert-auth)", endpoints: ["198.18.0.5:2379"], tls: { ca: Buffer.from("x") }, ok: false },
    { name: "TLS without a client certificate to a loopback endpoint is allowed", endpoints: ["127.0.0.1:2379"], tls: { ca: Buffer.from("x") }, ok: true },
    { name: "a client certificate without its key is refused", endpoints: ["198.18.0.5:2379"], tls: { ca: Buffer.from("x"), cert: Buffer.from("y") }, ok: false },
  ];
  for (const tc of transport) {
    it(tc.name, () => {
      const check = () => checkEtcdTransport(tc.endpoints, tc.tls);
      if (tc.ok) expect(check).not.toThrow();
      else expect(check).toThrow(/etcd store/);
    });
  }

  it("EtcdStore.open refuses plaintext to a remote endpoint before dialing, naming the flags", async () => {
    await expect(EtcdStore.open({ endpoints: ["198.18.0.5:2379"] })).rejects.toThrow(/refusing plaintext to 198\.18\.0\.5:2379.*--etcd-ca, --etcd-cert, --etcd-key/);
  });
});
