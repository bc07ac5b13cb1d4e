/**
 * The paths a cluster on etcd takes, measured on one agent (backend, N leases), in one
 * lab: an etcd in its own namespace, the agent in a node namespace, writers in the etcd
 * namespace, a /healthz probe beside the agent.
 *
 * 1. burst-500: N nodes appear, one grant + put each, ~500 puts/s (a large rollout);
 * 2. burst-max: every lease rewritten (new VTEP MAC) as fast as the writer can;
 * 3. resync: the agent frozen (SIGSTOP), etcd restarted, a tenth of the leases rewritten
 *    and the history compacted; the agent resumed: its watch cannot replay, it re-lists;
 * 4. list: a second agent starts on a fresh node and lists the N + 1 leases.
 *
 * Per path: lag from the last write (list: from the agent's start; resync: from its
 * resume) to the agent's log saying all are programmed, the agent's CPU-seconds over that
 * span (children included), /healthz worst and p99 latency over it, RSS before and 2 s after.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { startEtcd, type TestEtcd } from "../../test/helpers/etcd.ts";
import { Lab } from "../../test/helpers/netns.ts";
import { AgentRun, HealthzProbe, healthzFigures, loadAverage, runHelper } from "./agent-run.ts";
import { benchNetwork } from "./leases.ts";

export type PathName = "burst-500" | "burst-max" | "resync" | "list" | "kube-list" | "kube-burst";

export interface PathResult {
  readonly path: PathName;
  readonly backend: string;
  readonly leases: number;
  /** last write (list: agent start; resync: agent resumed) → all programmed */
  readonly lagMs: number;
  /** how long the writes took (0 for list and resync) */
  readonly writeMs: number;
  readonly cpuS: number;
  /** of cpuS: the processes the agent ran (ip, bridge, ping) */
  readonly childCpuS: number;
  /** cpuS over the span from the first write (or start/resume) to all programmed, in % of one core */
  readonly cpuPct: number;
  readonly healthzWorstMs: number;
  readonly healthzP99Ms: number;
  readonly healthzProbes: number;
  readonly healthzFailed: number;
  readonly rssBeforeMiB: number;
  readonly rssAfterMiB: number;
  readonly peakMiB: number;
  readonly load: number;
}

const ETCD_IP = "198.18.254.1";

export interface EtcdPathOptions {
  readonly binary: string;
  readonly backend: string;
  readonly n: number;
  readonly paths: readonly PathName[];
  readonly log: (s: string) => void;
  /** Copy the agents' logs into this directory before the lab is removed. */
  readonly keepLogs?: string;
}

export async function etcdPaths(o: EtcdPathOptions): Promise<PathResult[]> {
  const lab = new Lab("bcp");
  let etcd: TestEtcd | null = null;
  const out: PathResult[] = [];
  const agents: AgentRun[] = [];
  const net = benchNetwork(o.n);
  try {
    const etcdNs = await lab.addHost("etcd", ETCD_IP);
    etcd = await startEtcd({ netns: etcdNs, host: ETCD_IP });
    await etcd.etcdctl(["put", "/coreos.com/network/config", net.json]);
    const endpoint = etcd.endpoint;
    const start = async (name: string): Promise<AgentRun> => {
      const node = await lab.addNode();
      const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}-${name}`;
      lab.bpffsDirs.push(bpffs);
      const p = lab.spawn(node.ns, name, [
        o.binary,
        "agent",
        `--backend=${o.backend}`,
        `--etcd-endpoints=${endpoint}`,
        "--iface=eth0",
        `--node-name=${name}`,
        `--subnet-file=${join(lab.dir, name, "subnet.env")}`,
        "--http=127.0.0.1:8471",
        `--state-dir=${lab.dir}/state`,
        `--bpffs=${bpffs}`,
        "--log-level=info",
      ]);
      const a = new AgentRun(lab, node.ns, p);
      agents.push(a);
      return a;
    };
    const write = (name: string, from: number, count: number, rate: number, gen: number) =>
      runHelper<{ count: number; first: number; last: number }>(lab, etcdNs, name, [
        "etcd-writer.ts",
        endpoint,
        String(o.n),
        String(from),
        String(count),
        String(rate),
        String(gen),
      ]);
    const ready = async (a: AgentRun) => {
      await a.programmed(0, () => true, `${a.proc.name}'s first apply`, 60_000);
    };
    const timeout = 120_000 + o.n * 10;

    const a1 = await start("n1");
    await ready(a1);
    await Bun.sleep(1000);

    // 1, 2: bursts of single puts
    const burst = async (path: "burst-500" | "burst-max", gen: number, rate: number) => {
      const load = loadAverage();
      const rssBefore = a1.memory().rss;
      const probe = new HealthzProbe(lab, a1.ns, `probe-${path}`);
      await Bun.sleep(200);
      const cpu0 = a1.cpu();
      const child0 = a1.childCpu();
      const t0 = Date.now();
      o.log(`  ${path}: writing ${o.n} leases${rate ? ` at ${rate}/s` : " as fast as possible"}`);
      const w = await write(`writer-${path}`, 0, o.n, rate, gen);
      const want = (a: { added: number; updated: number }[]) =>
        a.reduce((s, x) => s + (gen === 0 ? x.added : x.updated), 0) >= o.n;
      const done = await a1.programmed(t0, want, `${path}: ${o.n} leases programmed`, timeout);
      const cpuS = a1.cpu() - cpu0;
      const childCpuS = a1.childCpu() - child0;
      const probes = await probe.stop();
      await Bun.sleep(2000);
      const mem = a1.memory();
      const h = healthzFigures(probes, w.first, done);
      out.push({
        path,
        backend: o.backend,
        leases: o.n,
        lagMs: done - w.last,
        writeMs: w.last - w.first,
        cpuS,
        childCpuS,
        cpuPct: (100 * cpuS) / ((done - t0) / 1000),
        healthzWorstMs: h.worst,
        healthzP99Ms: h.p99,
        healthzProbes: h.count,
        healthzFailed: h.failed,
        rssBeforeMiB: rssBefore,
        rssAfterMiB: mem.rss,
        peakMiB: mem.peak,
        load,
      });
    };
    if (o.paths.includes("burst-500") || o.paths.includes("burst-max") || o.paths.includes("resync"))
      await burst("burst-500", 0, 500);
    if (o.paths.includes("burst-max")) await burst("burst-max", 1, 0);

    // 3: a resync after compaction
    if (o.paths.includes("resync")) {
      const load = loadAverage();
      const rssBefore = a1.memory().rss;
      a1.proc.proc.kill("SIGSTOP");
      const tenth = Math.max(1, Math.floor(o.n / 10));
      try {
        await etcd.stop();
        await etcd.start();
        await write("writer-resync", 0, tenth, 0, 2);
        await etcd.compact();
      } finally {
        a1.proc.proc.kill("SIGCONT");
      }
      const t0 = Date.now();
      const probe = new HealthzProbe(lab, a1.ns, "probe-resync");
      const cpu0 = a1.cpu();
      const child0 = a1.childCpu();
      const done = await a1.programmed(
        t0,
        (a) => a.reduce((s, x) => s + x.updated, 0) >= tenth,
        `resync: ${tenth} rewritten leases programmed`,
        timeout,
      );
      const cpuS = a1.cpu() - cpu0;
      const childCpuS = a1.childCpu() - child0;
      const probes = await probe.stop();
      await Bun.sleep(2000);
      const mem = a1.memory();
      const h = healthzFigures(probes, t0, done);
      out.push({
        path: "resync",
        backend: o.backend,
        leases: o.n,
        lagMs: done - t0,
        writeMs: 0,
        cpuS,
        childCpuS,
        cpuPct: (100 * cpuS) / ((done - t0) / 1000),
        healthzWorstMs: h.worst,
        healthzP99Ms: h.p99,
        healthzProbes: h.count,
        healthzFailed: h.failed,
        rssBeforeMiB: rssBefore,
        rssAfterMiB: mem.rss,
        peakMiB: mem.peak,
        load,
      });
    }

    // 4: a fresh node lists everything at start
    if (o.paths.includes("list")) {
      if (!o.paths.some((p) => p.startsWith("burst") || p === "resync"))
        await write("writer-fill", 0, o.n, 0, 0);
      const load = loadAverage();
      const t0 = Date.now();
      const a2 = await start("n2");
      const probe = new HealthzProbe(lab, a2.ns, "probe-list");
      // the fake leases and n1's
      const done = await a2.programmed(
        t0,
        (a) => a.some((x) => x.total >= o.n + 1),
        `list: ${o.n + 1} leases programmed`,
        timeout,
      );
      const cpuS = a2.cpu();
      const childCpuS = a2.childCpu();
      const probes = await probe.stop();
      await Bun.sleep(2000);
      const mem = a2.memory();
      const answered = probes.find(([, , s]) => s === 200)?.[0] ?? t0;
      const h = healthzFigures(probes, answered, done);
      out.push({
        path: "list",
        backend: o.backend,
        leases: o.n,
        lagMs: done - t0,
        writeMs: 0,
        cpuS,
        childCpuS,
        cpuPct: (100 * cpuS) / ((done - t0) / 1000),
        healthzWorstMs: h.worst,
        healthzP99Ms: h.p99,
        healthzProbes: h.count,
        healthzFailed: h.failed,
        rssBeforeMiB: Number.NaN,
        rssAfterMiB: mem.rss,
        peakMiB: mem.peak,
        load,
      });
    }
    return out;
  } finally {
    // SIGTERM first: an agent run under a profiler writes its profile on exit
    for (const a of agents) await lab.stop(a.proc, "SIGTERM", 10_000);
    if (o.keepLogs) {
      mkdirSync(o.keepLogs, { recursive: true });
      for (const a of agents)
        copyFileSync(a.proc.logPath, join(o.keepLogs, `${o.backend}-${o.n}-${a.proc.name}.log`));
    }
    await etcd?.close();
    await lab.cleanup();
  }
}
