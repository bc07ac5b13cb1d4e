/**
 * A real etcd for tests: Debian's etcd-server, on a free loopback port pair (or in a
 * test network namespace), data in a fresh temp dir. It can be stopped (or killed) and
 * started again on the same data (outage tests), compacted, and driven with etcdctl.
 * `startEtcdCluster` runs several members, each in its own namespace, as one cluster
 * (leader and quorum faults, member replacement). `close()` stops it by PID and removes
 * the temp dir (call it in afterAll).
 * etcd runs under `setpriv --pdeathsig SIGKILL`, so it dies with the test process even
 * when a run is killed before close() (bun test fires no process "exit" event).
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export interface EtcdTls {
  /** The CA that signed every certificate below (PEM). */
  readonly caFile: string;
  /** etcd's server certificate and key for its client listener (PEM). */
  readonly certFile: string;
  readonly keyFile: string;
  /** When set, etcd requires client certificates signed by caFile; etcdctl uses this one. */
  readonly client?: { readonly certFile: string; readonly keyFile: string };
}

export interface StartEtcdOptions {
  /** Run etcd inside this network namespace (`ip netns exec`); etcdctl runs there too. */
  netns?: string;
  /** Address to listen on: 127.0.0.1 by default; inside a netns, one of its addresses. */
  host?: string;
  /** Ports; free loopback ports by default (2379/2380 inside a netns). */
  clientPort?: number;
  peerPort?: number;
  /** Serve clients over TLS. */
  tls?: EtcdTls;
  /** How long start() waits for etcd to answer; default 30 s. */
  readyTimeoutMs?: number;
  /** The member's name (default tartan-test). */
  name?: string;
  /** --initial-cluster (default: this member alone). */
  initialCluster?: string;
  /** --initial-cluster-state (default new; "existing" for a member added to a live cluster). */
  initialClusterState?: "new" | "existing";
}

export interface EtcdctlOptions {
  /** Extra global flags, e.g. ["--user", "root:pw"] or TLS flags. */
  flags?: string[];
  /** Text to feed on stdin. */
  stdin?: string;
}

export interface TestEtcd {
  /** "http://127.0.0.1:PORT" (https with tls). */
  readonly endpoint: string;
  /** etcd's data dir (inside tmpDir). */
  readonly dataDir: string;
  /** The temp dir holding the data and the log; removed by close(). */
  readonly tmpDir: string;
  /** Where etcd's output goes (read it when a test fails). */
  readonly logFile: string;
  /** The running etcd's PID, or null when stopped. */
  readonly pid: number | null;
  /** This member's peer URL. */
  readonly peerUrl: string;
  /** Stops etcd (SIGTERM, then SIGKILL; or SIGKILL at once); the data stays. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts etcd again on the same data dir and waits until it answers. */
  start(): Promise<void>;
  /** Compacts the history up to the current revision; returns that revision. */
  compact(): Promise<number>;
  /** The store's current revision. */
  revision(): Promise<number>;
  /** Runs `etcdctl` (API v3) against this etcd; returns stdout, throws with stderr on failure. */
  etcdctl(args: string[], opts?: EtcdctlOptions): Promise<string>;
  /** Stops etcd and removes its temp dir (idempotent). */
  close(): Promise<void>;
}

/** A TCP port free on `host` right now (etcd binds it moments later; start() retries on a clash). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

const hasSetpriv = Bun.which("setpriv") !== null;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<TestEtcd> {
  const host = opts.host ?? "127.0.0.1";
  const tmp = mkdtempSync(join(tmpdir(), "tartan-etcd-"));
  const dataDir = join(tmp, "data");
  const logFile = join(tmp, "etcd.log");
  const scheme = opts.tls ? "https" : "http";
  const wrap = (cmd: string[]) => (opts.netns ? ["ip", "netns", "exec", opts.netns, ...cmd] : cmd);
  let clientPort = opts.clientPort ?? (opts.netns ? 2379 : 0);
  let peerPort = opts.peerPort ?? (opts.netns ? 2380 : 0);
  let proc: Subprocess | null = null;
  let logOffset = 0;
  let closed = false;

  const name = opts.name ?? "tartan-test";
  const endpointOf = () => `${scheme}://${host}:${clientPort}`;
  const peerOf = () => `http://${host}:${peerPort}`;
  const ctlFlags = () => {
    const f = [`--endpoints=${endpointOf()}`, "--dial-timeout=2s", "--command-timeout=5s"];
    if (opts.tls) f.push(`--cacert=${opts.tls.caFile}`);
    if (opts.tls?.client) f.push(`--cert=${opts.tls.client.certFile}`, `--key=${opts.tls.client.keyFile}`);
    return f;
  };

  const etcdctl = async (args: string[], o: EtcdctlOptions = {}): Promise<string> => {
    const p = Bun.spawn(wrap(["etcdctl", ...ctlFlags(), ...(o.flags ?? []), ...args]), {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdin: o.stdin === undefined ? "ignore" : new TextEncoder().encode(o.stdin),
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${code}: ${err.trim()}`);
    return out;
  };

  const logTail = () => {
    try {
      return readFileSync(logFile, "utf8").slice(logOffset).split("\n").slice(-15).join("\n");
    } catch {
      return "(no log)";
    }
  };

  const spawnOnce = async (): Promise<boolean> => {
    if (clientPort === 0) clientPort = await freePort(host);
    if (peerPort === 0) peerPort = await freePort(host);
    const peer = peerOf();
    const args = [
      // dies with us if we die without close()
      ...(hasSetpriv ? ["setpriv", "--pdeathsig", "SIGKILL", "--"] : []),
      "etcd",
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpointOf()}`,
      `--advertise-client-urls=${endpointOf()}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${opts.initialCluster ?? `${name}=${peer}`}`,
      `--initial-cluster-state=${opts.initialClusterState ?? "new"}`,
      "--logger=zap",
      "--log-outputs=stderr",
    ];
    if (opts.tls) {
      args.push(`--cert-file=${opts.tls.certFile}`, `--key-file=${opts.tls.keyFile}`);
      if (opts.tls.client) args.push("--client-cert-auth", `--trusted-ca-file=${opts.tls.caFile}`);
    }
    try {
      logOffset = readFileSync(logFile, "utf8").length;
    } catch {
      logOffset = 0;
    }
    // one log across restarts: each run appends
    const fd = openSync(logFile, "a");
    let p: Subprocess;
    try {
      p = Bun.spawn(wrap(args), { stdin: "ignore", stdout: fd, stderr: fd });
    } finally {
      closeSync(fd);
    }
    proc = p;
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (p.exitCode !== null) return false;
      try {
        await etcdctl(["endpoint", "health"]);
        return true;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`etcd did not become ready at ${endpointOf()}:\n${logTail()}`);
  };

  const stop = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const p = proc;
    if (!p) return;
    proc = null;
    p.kill(signal);
    const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await p.exited;
    clearTimeout(killer);
  };

  const start = async () => {
    if (proc) return;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (await spawnOnce()) return;
      proc = null;
      // a port taken in the meantime: pick new ones (only where we chose them)
      if (opts.clientPort === undefined && !opts.netns) clientPort = 0;
      if (opts.peerPort === undefined && !opts.netns) peerPort = 0;
    }
    throw new Error(`etcd would not start:\n${logTail()}`);
  };

  const revision = async () => {
    const out = await etcdctl(["get", "--write-out=json", "/"]);
    return Number((JSON.parse(out) as { header: { revision: number } }).header.revision);
  };

  const etcd: TestEtcd = {
    get endpoint() {
      return endpointOf();
    },
    get peerUrl() {
      return peerOf();
    },
    dataDir,
    tmpDir: tmp,
    logFile,
    get pid() {
      return proc?.pid ?? null;
    },
    stop,
    start,
    async compact() {
      const rev = await revision();
      await etcdctl(["compact", String(rev), "--physical"]);
      return rev;
    },
    revision,
    etcdctl,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await stop();
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
  try {
    await start();
  } catch (err) {
    await etcd.close();
    throw err;
  }
  return etcd;
}

export interface EtcdMemberSpec {
  /** The member's namespace (on the lab's underlay) and its address there. */
  readonly netns: string;
  readonly host: string;
}

export interface TestEtcdCluster {
  /** Every member's client URL, comma-separated: what agents get as --etcd-endpoints. */
  readonly endpoint: string;
  /** The members in start order; a replaced member is removed, its successor appended. */
  readonly members: TestEtcd[];
  /** etcdctl against every running member (it fails over); throws with stderr on failure. */
  etcdctl(args: string[], opts?: EtcdctlOptions): Promise<string>;
  /** The index in `members` of the current leader (null when no running member knows one). */
  leader(): Promise<number | null>;
  /**
   * Replaces member `i`: `etcdctl member remove`, then `member add` of a new member at
   * `spec` and starts it with --initial-cluster-state=existing. Returns the new member.
   */
  replace(i: number, spec: EtcdMemberSpec): Promise<TestEtcd>;
  close(): Promise<void>;
}

/**
 * Starts one etcd member per spec as one cluster, all at once (a lone member waits for
 * quorum). Cluster-wide etcdctl runs in `ctlNetns` (default: the first live member's
 * namespace), so a test can cut a member off without cutting etcdctl off too.
 */
export async function startEtcdCluster(
  specs: readonly EtcdMemberSpec[],
  opts: { ctlNetns?: string } = {},
): Promise<TestEtcdCluster> {
  const names = specs.map((_, i) => `m${i + 1}`);
  const initialCluster = specs.map((s, i) => `${names[i]}=http://${s.host}:2380`).join(",");
  const members: TestEtcd[] = [];
  const nameOf = new Map<TestEtcd, string>();
  const started = await Promise.allSettled(
    specs.map((s, i) => startEtcd({ netns: s.netns, host: s.host, name: names[i], initialCluster })),
  );
  for (const [i, r] of started.entries())
    if (r.status === "fulfilled") {
      members.push(r.value);
      nameOf.set(r.value, names[i]!);
    }
  const close = async () => {
    for (const m of members) await m.close();
  };
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await close();
    throw (failed as PromiseRejectedResult).reason;
  }
  let added = specs.length;

  const etcdctl = async (args: string[], o: EtcdctlOptions = {}): Promise<string> => {
    const live = members.filter((m) => m.pid !== null);
    if (live.length === 0) throw new Error(`etcdctl ${args.join(" ")}: no etcd member is running`);
    const all = live.map((m) => m.endpoint).join(",");
    if (!opts.ctlNetns)
      return live[0]!.etcdctl(args, { ...o, flags: [`--endpoints=${all}`, ...(o.flags ?? [])] });
    const p = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        opts.ctlNetns,
        "etcdctl",
        `--endpoints=${all}`,
        "--dial-timeout=2s",
        "--command-timeout=5s",
        ...(o.flags ?? []),
        ...args,
      ],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
        stdin: o.stdin === undefined ? "ignore" : new TextEncoder().encode(o.stdin),
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${code}: ${err.trim()}`);
    return out;
  };

  /**
   * `etcdctl member list` as {id (hex, as etcdctl takes it), peer URL}: the simple format,
   * because the JSON one carries 64-bit ids as numbers, which JSON.parse rounds.
   */
  const memberList = async () =>
    (await etcdctl(["member", "list"]))
      .trim()
      .split("\n")
      .map((l) => l.split(", "))
      .map((f) => ({ id: f[0]!, peerUrl: f[3]! }));

  /**
   * A membership change, retried until `done()` says it took effect: etcd refuses one
   * while a member has been connected for less than 5 s ("unhealthy cluster"), and one
   * proposed during a leader election times out (it may still have been applied).
   */
  const reconfigure = async (args: string[], done: () => Promise<boolean>) => {
    const end = Date.now() + 30_000;
    for (;;) {
      try {
        await etcdctl(args);
        return;
      } catch (e) {
        if (await done().catch(() => false)) return;
        if (Date.now() > end) throw e;
        await sleep(500);
      }
    }
  };

  return {
    get endpoint() {
      return members.map((m) => m.endpoint).join(",");
    },
    members,
    etcdctl,
    async leader() {
      // each running member's own view: "ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, ..."
      for (const [i, m] of members.entries()) {
        if (m.pid === null) continue;
        const line = await m.etcdctl(["endpoint", "status"]).catch(() => "");
        if (line.split(", ")[4] === "true") return i;
      }
      return null;
    },
    async replace(i: number, spec: EtcdMemberSpec) {
      const old = members[i]!;
      const id = (await memberList()).find((m) => m.peerUrl === old.peerUrl)?.id;
      if (id === undefined) throw new Error(`no etcd member with peer URL ${old.peerUrl}`);
      await reconfigure(["member", "remove", id], async () =>
        (await memberList()).every((m) => m.peerUrl !== old.peerUrl),
      );
      await old.close();
      members.splice(i, 1);
      nameOf.delete(old);
      const name = `m${++added}`;
      const peer = `http://${spec.host}:2380`;
      await reconfigure(["member", "add", name, `--peer-urls=${peer}`], async () =>
        (await memberList()).some((m) => m.peerUrl === peer),
      );
      const initial = [...members.map((m) => `${nameOf.get(m)}=${m.peerUrl}`), `${name}=${peer}`];
      const fresh = await startEtcd({
        netns: spec.netns,
        host: spec.host,
        name,
        initialCluster: initial.join(","),
        initialClusterState: "existing",
      });
      members.push(fresh);
      nameOf.set(fresh, name);
      return fresh;
    },
    close,
  };
}
