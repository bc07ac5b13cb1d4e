/**
 * A real, single-member etcd for tests: Debian's etcd-server, on a free loopback port
 * pair (or in a test network namespace), data in a fresh temp dir. It can be stopped
 * and started again on the same data (outage tests), compacted, and driven with
 * etcdctl. `close()` stops it by PID and removes the temp dir (call it in afterAll).
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
  /** Stops etcd (SIGTERM, then SIGKILL); the data stays. */
  stop(): Promise<void>;
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

  const endpointOf = () => `${scheme}://${host}:${clientPort}`;
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
    const peer = `http://${host}:${peerPort}`;
    const args = [
      // dies with us if we die without close()
      ...(hasSetpriv ? ["setpriv", "--pdeathsig", "SIGKILL", "--"] : []),
      "etcd",
      "--name=tartan-test",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpointOf()}`,
      `--advertise-client-urls=${endpointOf()}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=tartan-test=${peer}`,
      "--initial-cluster-state=new",
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

  const stop = async () => {
    const p = proc;
    if (!p) return;
    proc = null;
    p.kill("SIGTERM");
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
