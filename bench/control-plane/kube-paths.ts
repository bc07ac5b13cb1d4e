/**
 * The Node-informer path: N realistic Nodes (about 6 KB of JSON each, test/helpers/
 * kube-nodes.ts) with flannel's annotations on the stand-in API server, in its own
 * namespace; the probe (kube-probe.ts: the agent's LeaseSync over src/kube's
 * KubeLeaseSource, a backend that programs nothing) in a node namespace.
 *
 * 1. kube-list: the probe starts and lists every Node (paged, 500 a page) → all programmed;
 * 2. kube-burst: every Node's public-ip annotation changed, 50 Nodes per request every
 *    100 ms (~500 MODIFIED events/s, as a rollout restarting flanneld everywhere) →
 *    all programmed again.
 *
 * Same figures as the etcd paths; there is no datapath here (backend "none"), so they are
 * the control plane's alone.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { startKubeApiServerInNamespace } from "../../test/helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../../test/helpers/kube-nodes.ts";
import { Lab } from "../../test/helpers/netns.ts";
import { AgentRun, BUN, HealthzProbe, healthzFigures, loadAverage } from "./agent-run.ts";
import type { PathName, PathResult } from "./etcd-paths.ts";
import { benchLease, benchNetwork } from "./leases.ts";

const API_IP = "198.18.254.2";
const HERE = import.meta.dir;

export interface KubePathOptions {
  readonly n: number;
  readonly paths: readonly PathName[];
  readonly log: (s: string) => void;
  readonly keepLogs?: string;
}

export async function kubePaths(o: KubePathOptions): Promise<PathResult[]> {
  const lab = new Lab("bkp");
  const out: PathResult[] = [];
  let probe: AgentRun | null = null;
  const net = benchNetwork(o.n);
  const cidr = (i: number) => benchLease(net, i).key.replace(/-(\d+)$/, "/$1");
  const ipOf = (i: number) => `198.18.${((i + 10) >> 8) & 255}.${(i + 10) & 255}`;
  try {
    const api = await startKubeApiServerInNamespace(lab, { ip: API_IP, historyLimit: 2 * o.n + 1000 });
    o.log(`  creating ${o.n} Nodes`);
    for (let i = 0; i < o.n; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(o.n, i + 1000); j++)
        batch.push(
          makeNode({
            name: `node-${j}`,
            podCIDR: cidr(j),
            internalIp: ipOf(j),
            annotations: flanneldVxlanAnnotations(ipOf(j), macFor(j + 1)),
            realistic: true,
          }),
        );
      await api.createNodes(batch);
    }
    const node = await lab.addNode();
    const load = loadAverage();
    const t0 = Date.now();
    const p = lab.spawn(node.ns, "kube-probe", [
      BUN,
      join(HERE, "kube-probe.ts"),
      `http://${API_IP}:6443`,
      net.json,
      "8471",
    ]);
    probe = new AgentRun(lab, node.ns, p);
    const health = new HealthzProbe(lab, node.ns, "probe-kube-list");
    const listed = await probe.programmed(0, (a) => a.some((x) => x.total >= o.n), "kube list", 600_000);
    const listCpu = probe.cpu();
    const listProbes = await health.stop();
    await Bun.sleep(2000);
    const afterList = probe.memory();
    const answered = listProbes.find(([, , s]) => s === 200)?.[0] ?? t0;
    const h = healthzFigures(listProbes, answered, listed);
    out.push({
      path: "kube-list",
      backend: "none",
      leases: o.n,
      lagMs: listed - t0,
      writeMs: 0,
      cpuS: listCpu,
      childCpuS: 0,
      cpuPct: (100 * listCpu) / ((listed - t0) / 1000),
      healthzWorstMs: h.worst,
      healthzP99Ms: h.p99,
      healthzProbes: h.count,
      healthzFailed: h.failed,
      rssBeforeMiB: Number.NaN,
      rssAfterMiB: afterList.rss,
      peakMiB: afterList.peak,
      load,
    });

    if (o.paths.includes("kube-burst")) {
      const load2 = loadAverage();
      const rssBefore = probe.memory().rss;
      const health2 = new HealthzProbe(lab, node.ns, "probe-kube-burst");
      await Bun.sleep(200);
      const cpu0 = probe.cpu();
      const first = Date.now();
      o.log(`  kube-burst: annotating ${o.n} Nodes at ~500/s`);
      const names = Array.from({ length: o.n }, (_, i) => `node-${i}`);
      for (let i = 0; i < o.n; i += 50) {
        const due = first + (i / 500) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await Bun.sleep(wait);
        await api.annotateNodes(names.slice(i, i + 50), {
          "flannel.alpha.coreos.com/public-ip": "198.18.255.9",
        });
      }
      const last = Date.now();
      const done = await probe.programmed(
        first,
        (a) => a.reduce((s, x) => s + x.updated, 0) >= o.n,
        `kube burst: ${o.n} updates programmed`,
        600_000,
      );
      const cpuS = probe.cpu() - cpu0;
      const probes = await health2.stop();
      await Bun.sleep(2000);
      const mem = probe.memory();
      const h2 = healthzFigures(probes, first, done);
      out.push({
        path: "kube-burst",
        backend: "none",
        leases: o.n,
        lagMs: done - last,
        writeMs: last - first,
        cpuS,
        childCpuS: 0,
        cpuPct: (100 * cpuS) / ((done - first) / 1000),
        healthzWorstMs: h2.worst,
        healthzP99Ms: h2.p99,
        healthzProbes: h2.count,
        healthzFailed: h2.failed,
        rssBeforeMiB: rssBefore,
        rssAfterMiB: mem.rss,
        peakMiB: mem.peak,
        load: load2,
      });
    }
    return out;
  } finally {
    if (probe) await lab.stop(probe.proc, "SIGTERM", 10_000);
    if (o.keepLogs && probe) {
      mkdirSync(o.keepLogs, { recursive: true });
      copyFileSync(probe.proc.logPath, join(o.keepLogs, `kube-${o.n}.log`));
    }
    await lab.cleanup();
  }
}
