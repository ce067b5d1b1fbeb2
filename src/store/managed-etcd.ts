/**
 * ManagedEtcd runs this Coordinator's member of the Coordinators' etcd cluster (StoreMembers):
 * meshd spawns the Debian `etcd` binary, supervises it (restarting it when it exits on its own) and
 * stops it on shutdown. Data and TLS files live in the state dir (the encrypted state volume on a
 * real disk). Peer traffic runs on the VPN IP, client traffic on loopback only, both with mutual TLS
 * under the cluster's etcd CA (etcd-pki.ts), which only holders of the master secret can make.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import type { ClusterSecrets } from "../core/cluster-store.js";
import { errorMessage, FailedPreconditionError, UnavailableError } from "../core/errors.js";
import type { Logger } from "../shared/logger.js";
import type { DeferredStore, StoreMembers } from "../core/store-members.js";
import { caSubject, deriveEtcdCA, issueMemberCertificate } from "./etcd-pki.js";
import { defaultNamespace } from "./etcd-layout.js";
import { EtcdStore, passThrough } from "./store-etcd.js";

/** ManagedEtcdOptions configure a ManagedEtcd. */
export interface ManagedEtcdOptions {
  /** etcdBin is the etcd binary (meshd --etcd-bin, default /usr/bin/etcd). */
  etcdBin: string;
  /** dir holds data/, tls/, etcd.log and etcd.pid (inside the state dir). */
  dir: string;
  clientPort: number;
  peerPort: number;
  /** store is the DeferredStore the peer uses: ManagedEtcd attaches the etcd store to it. */
  store: DeferredStore;
  logger: Logger;
}

const memberName = (vpnIP: string): string => `coordinator-${vpnIP.replaceAll(".", "-")}`;

/** unhealthyRetryMs bounds how long removeMember waits out etcd's "unhealthy cluster" refusal. */
const unhealthyRetryMs = 20_000;

/** ManagedEtcd is safe for concurrent use; close() stops the member. */
export class ManagedEtcd implements StoreMembers {
  readonly #o: ManagedEtcdOptions;
  #child: ChildProcess | undefined;
  #args: string[] | undefined;
  #stopping = false;
  #client: Etcd3 | undefined;
  #restarts = 0;

  constructor(options: ManagedEtcdOptions) {
    this.#o = options;
  }

  get #tls(): string {
    return join(this.#o.dir, "tls");
  }

  #peerURL(vpnIP: string): string {
    return `https://${vpnIP}:${this.#o.peerPort}`;
  }

  async create(vpnIP: string, secrets: ClusterSecrets): Promise<void> {
    await this.#checkRoom();
    await this.#writeCredentials(vpnIP, secrets);
    await this.#start(vpnIP, { initialCluster: `${memberName(vpnIP)}=${this.#peerURL(vpnIP)}`, state: "new", token: secrets.clusterID.toString("hex").slice(0, 32) });
    await this.ready();
  }

  async join(vpnIP: string, secrets: ClusterSecrets, joinInfo: string): Promise<void> {
    const info = JSON.parse(joinInfo) as { initialCluster?: unknown };
    if (typeof info.initialCluster !== "string" || !/^[\w.:/=,-]+$/.test(info.initialCluster)) throw new FailedPreconditionError("storeJoin: not a valid etcd initial cluster");
    await this.#checkRoom();
    await this.#writeCredentials(vpnIP, secrets);
    // A learner serves no reads: the store is opened in ready(), after the promotion.
    await this.#start(vpnIP, { initialCluster: info.initialCluster, state: "existing", token: secrets.clusterID.toString("hex").slice(0, 32) });
  }

  /**
   * reopen starts the member again from its data and waits until it serves reads, which needs a
   * majority of the members: after all Coordinators went down this waits (logging each try) for
   * enough of them to come back, rather than failing the Coordinator.
   */
  async reopen(vpnIP: string): Promise<void> {
    if (!existsSync(join(this.#o.dir, "data", "member"))) throw new FailedPreconditionError(`managed etcd: no member data in ${join(this.#o.dir, "data")}`);
    await this.#start(vpnIP, undefined);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ready();
        return;
      } catch (err) {
        if (!(err instanceof UnavailableError) || this.#stopping) throw err;
        this.#o.logger.warn("etcd member started but serves no reads yet: waiting for a majority of the Coordinators' members", { attempt, error: errorMessage(err) });
      }
    }
  }

  /** ready opens the store on the local member and attaches it (after create, reopen, or a promotion). */
  async ready(): Promise<void> {
    if (this.#o.store.attached) return;
    const store = await EtcdStore.open({ endpoints: [`127.0.0.1:${this.#o.clientPort}`], tls: await this.#tlsFiles(), dialTimeoutMs: 30_000, callTimeoutMs: 5_000, logger: this.#o.logger });
    await this.#o.store.attach(store);
  }

  async addMember(vpnIP: string): Promise<string> {
    const client = await this.#admin();
    const deadline = Date.now() + 30_000;
    let res;
    for (;;) {
      try {
        res = await client.cluster.memberAdd({ peerURLs: [this.#peerURL(vpnIP)], isLearner: true });
        break;
      } catch (err) {
        // etcd adds a member only once every voting member was connected for 5 s ("unhealthy cluster").
        if (!/unhealthy cluster/.test(errorMessage(err)) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    const initialCluster = res.members
      .flatMap((m) => m.peerURLs.map((u) => `${m.name || (u === this.#peerURL(vpnIP) ? memberName(vpnIP) : "")}=${u}`))
      .filter((e) => !e.startsWith("="))
      .join(",");
    this.#o.logger.info("added an etcd learner", { vpnIP });
    return JSON.stringify({ initialCluster });
  }

  async promoteMember(vpnIP: string): Promise<void> {
    const client = await this.#admin();
    const deadline = Date.now() + 60_000;
    for (;;) {
      const m = (await client.cluster.memberList({})).members.find((x) => x.peerURLs.includes(this.#peerURL(vpnIP)));
      if (!m) throw new FailedPreconditionError(`etcd: no member at ${this.#peerURL(vpnIP)}`);
      if (!m.isLearner) return;
      try {
        await client.cluster.memberPromote({ ID: m.ID });
        this.#o.logger.info("promoted the etcd learner", { vpnIP });
        return;
      } catch (err) {
        // "can only promote a learner member which is in sync with leader": wait for it to catch up.
        if (Date.now() > deadline) throw new UnavailableError(`etcd: promoting the member of ${vpnIP}: ${errorMessage(err)}`, { cause: err });
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  async isVoter(vpnIP: string): Promise<boolean> {
    const client = await this.#admin();
    const m = (await client.cluster.memberList({})).members.find((x) => x.peerURLs.includes(this.#peerURL(vpnIP)));
    return m !== undefined && !m.isLearner;
  }

  async removeMember(vpnIP: string): Promise<void> {
    const client = await this.#admin();
    // etcd refuses a removal while a remaining member has been connected for less than about 5 s
    // ("unhealthy cluster", e.g. right after a Coordinator restarted): that passes, so wait for it.
    for (const until = Date.now() + unhealthyRetryMs; ; ) {
      const m = (await client.cluster.memberList({})).members.find((x) => x.peerURLs.includes(this.#peerURL(vpnIP)));
      if (!m) return;
      try {
        await client.cluster.memberRemove({ ID: m.ID });
        return;
      } catch (err) {
        if (!/unhealthy cluster/.test(errorMessage(err))) throw err;
        if (Date.now() > until) {
          throw new UnavailableError(`managed etcd: removing the member at ${vpnIP}: etcd refuses it while another member is not connected long enough (unhealthy cluster); try again`, { cause: err });
        }
        this.#o.logger.info("etcd refuses the member removal until every remaining member has been connected a few seconds; waiting", { vpnIP });
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /**
   * checkQuorum answers within a few seconds, never after a long timeout: the local member must see
   * a leader. Right after a member died its peers may be electing a new leader (about an election
   * timeout, 1 s), so a missing leader is looked at again for up to quorumGraceMs before the quorum
   * counts as lost.
   */
  async checkQuorum(): Promise<void> {
    const deadline = Date.now() + quorumGraceMs;
    for (;;) {
      let leader = "";
      let raftTerm = "";
      let failure: unknown;
      try {
        const client = await this.#admin();
        const s = await client.maintenance.status({ deadline: Date.now() + 2_000 });
        leader = String(s.leader);
        raftTerm = String(s.raftTerm);
      } catch (err) {
        failure = err;
      }
      if (failure === undefined && leader !== "0" && leader !== "") return;
      if (Date.now() >= deadline) {
        if (failure !== undefined) {
          throw new UnavailableError(`etcd quorum: this Coordinator's etcd member does not answer (${errorMessage(failure)}); no change can be committed`, { cause: failure });
        }
        throw new UnavailableError(`etcd quorum lost: this Coordinator's etcd member has no leader (term ${raftTerm}): too few Coordinators are reachable; no change can be committed until a majority is back`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  watch(onChange: () => void): () => void {
    let stopped = false;
    let stop = (): void => {
      stopped = true;
    };
    void (async () => {
      for (let attempt = 0; !stopped; attempt++) {
        try {
          const client = await this.#admin();
          const w = await client.watch().prefix(defaultNamespace).create();
          w.on("put", onChange).on("delete", onChange);
          stop = () => {
            stopped = true;
            void w.cancel().catch(() => {});
          };
          return;
        } catch (err) {
          this.#o.logger.debug("etcd watch not ready", { error: errorMessage(err) });
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5_000)));
        }
      }
    })();
    return () => stop();
  }

  /**
   * discardUncommitted removes the member's data and credentials when this peer starts fresh: they
   * are what an activation interrupted before its commit point left (see MeshPeerOptions). A member
   * such a run left running is stopped first. Returns whether there was anything.
   */
  async discardUncommitted(): Promise<boolean> {
    const left = ["data", "tls"].map((d) => join(this.#o.dir, d)).filter((d) => existsSync(d));
    if (left.length === 0) return false;
    await killStale(join(this.#o.dir, "etcd.pid"), this.#o.logger);
    for (const d of left) await rm(d, { recursive: true, force: true });
    return true;
  }

  /** close stops the member (SIGTERM, SIGKILL after 5 s) and the admin client. */
  async close(): Promise<void> {
    this.#stopping = true;
    this.#client?.close();
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(t);
  }

  async #tlsFiles(): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> {
    const [ca, cert, key] = await Promise.all(["ca.pem", "member.pem", "member.key"].map((f) => readFile(join(this.#tls, f))));
    return { ca: ca, cert: cert, key: key };
  }

  async #admin(): Promise<Etcd3> {
    if (this.#client) return this.#client;
    const tls = await this.#tlsFiles();
    this.#client = new Etcd3({ hosts: [`https://127.0.0.1:${this.#o.clientPort}`], credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
      // No circuit breaker: membership calls are retried here, and a breaker would block the retries.
      faultHandling: { global: passThrough, host: () => passThrough },
    });
    return this.#client;
  }

  /**
   * #checkRoom refuses a new member on a filesystem without room for it: etcd preallocates a 64 MB
   * write-ahead log and, without the room, exits at once and forever restarts (a full disk looks
   * like "etcd does not answer" from outside).
   */
  async #checkRoom(): Promise<void> {
    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    const fs = await statfs(this.#o.dir);
    const free = fs.bavail * fs.bsize;
    if (free < minFreeBytes) {
      throw new FailedPreconditionError(
        `managed etcd: ${this.#o.dir} has ${Math.floor(free / 2 ** 20)} MiB free; an etcd member needs at least ${minFreeBytes / 2 ** 20} MiB (its write-ahead log alone preallocates 64 MB): give this Coordinator a larger state disk`,
      );
    }
  }

  async #writeCredentials(vpnIP: string, secrets: ClusterSecrets): Promise<void> {
    await mkdir(this.#tls, { recursive: true, mode: 0o700 });
    const ca = deriveEtcdCA(secrets.masterSecret, secrets.clusterID);
    const member = issueMemberCertificate(ca, caSubject(secrets.clusterID), memberName(vpnIP), ["127.0.0.1", vpnIP]);
    await writeFile(join(this.#tls, "ca.pem"), ca.certPEM, { mode: 0o644 });
    await writeFile(join(this.#tls, "member.pem"), member.certPEM, { mode: 0o644 });
    await writeFile(join(this.#tls, "member.key"), member.keyPEM, { mode: 0o600 });
  }

  async #start(vpnIP: string, init: { initialCluster: string; state: "new" | "existing"; token: string } | undefined): Promise<void> {
    await mkdir(join(this.#o.dir, "data"), { recursive: true, mode: 0o700 });
    await killStale(join(this.#o.dir, "etcd.pid"), this.#o.logger);
    const t = this.#tls;
    this.#args = [
      `--name=${memberName(vpnIP)}`,
      `--data-dir=${join(this.#o.dir, "data")}`,
      `--listen-client-urls=https://127.0.0.1:${this.#o.clientPort}`,
      `--advertise-client-urls=https://127.0.0.1:${this.#o.clientPort}`,
      `--listen-peer-urls=${this.#peerURL(vpnIP)}`,
      `--initial-advertise-peer-urls=${this.#peerURL(vpnIP)}`,
      `--cert-file=${join(t, "member.pem")}`, `--key-file=${join(t, "member.key")}`, `--trusted-ca-file=${join(t, "ca.pem")}`, "--client-cert-auth",
      `--peer-cert-file=${join(t, "member.pem")}`, `--peer-key-file=${join(t, "member.key")}`, `--peer-trusted-ca-file=${join(t, "ca.pem")}`, "--peer-client-cert-auth",
      "--logger=zap",
      ...(init ? [`--initial-cluster=${init.initialCluster}`, `--initial-cluster-state=${init.state}`, `--initial-cluster-token=${init.token}`] : []),
    ];
    this.#spawn();
  }

  #spawn(): void {
    const log = openSync(join(this.#o.dir, "etcd.log"), "a", 0o600);
    const child = spawn(this.#o.etcdBin, this.#args!, { stdio: ["ignore", log, log] });
    closeSync(log);
    this.#child = child;
    child.once("error", (err) => this.#o.logger.error("etcd: could not start", { bin: this.#o.etcdBin, error: errorMessage(err) }));
    if (child.pid) void writeFile(join(this.#o.dir, "etcd.pid"), `${child.pid}\n`);
    this.#o.logger.info("etcd member started", { pid: child.pid });
    child.once("exit", (code, signal) => {
      if (this.#stopping) return;
      this.#o.logger.error("etcd member exited: restarting it", {
        code: code ?? undefined,
        signal: signal ?? undefined,
        restarts: ++this.#restarts,
        // Its own last words say why (a bad flag, a port taken, a corrupt data dir); etcd logs no secrets.
        etcdSaid: tailOf(join(this.#o.dir, "etcd.log"), 600),
      });
      setTimeout(() => {
        if (!this.#stopping) this.#spawn();
      }, Math.min(500 * this.#restarts, 10_000));
    });
  }
}

/** tailOf returns the last `chars` characters of a file (its last lines, for an error message), "" when unreadable. */
function tailOf(file: string, chars: number): string {
  try {
    const text = readFileSync(file, "utf8").trimEnd();
    return text.length > chars ? `…${text.slice(-chars)}` : text;
  } catch {
    return "";
  }
}

/** minFreeBytes is the free space a new etcd member needs: a 64 MB WAL segment, the database, snapshots. */
const minFreeBytes = 128 * 2 ** 20;

/** quorumGraceMs is how long checkQuorum waits for a leader election before it reports a lost quorum. */
const quorumGraceMs = 4_000;

/** killStale kills an etcd left running by a meshd that was killed (its pid file names it). */
async function killStale(pidFile: string, logger: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return;
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("etcd")) return;
    process.kill(pid, "SIGKILL");
  } catch {
    return; // no pid file, or the process is gone
  }
  // Its files and ports are free only once it is gone (SIGKILL is not instant).
  for (const until = Date.now() + 5_000; existsSync(`/proc/${pid}`) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
  logger.warn("killed an etcd member left over from an earlier meshd", { pid });
}
