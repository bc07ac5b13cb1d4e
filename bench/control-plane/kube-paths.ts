/**
 * The Node-informer path: `tartan agent --kube-subnet-mgr` (its own Node's podCIDR as its
 * lease, every other Node a lease from the Node list and watch) against the stand-in API
 * server (test/helpers/kube-apiserver.ts: its own process and namespace, HTTPS with a
 * bearer token), with N realistic Nodes (about 6 KB of JSON each: test/helpers/kube-nodes.ts)
 * carrying flannel's annotations.
 *
 * 1. kube-list: the agent starts and lists every Node (paged, 500 a page) → all programmed;
 * 2. kube-burst: every Node's public-ip annotation changed, 50 Nodes per request every
 *    100 ms (~500 MODIFIED events/s, as a rollout restarting flanneld everywhere) →
 *    all programmed again.
 *
 * Same figures as the etcd paths.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatIp4 } from "../../src/config/cidr.ts";
import { startKubeApiServerInNamespace, writeKubeconfig } from "../../test/helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../../test/helpers/kube-nodes.ts";
import { Lab } from "../../test/helpers/netns.ts";
import { AgentRun, HealthzProbe, healthzFigures, loadAverage } from "./agent-run.ts";
import type { PathName, PathResult } from "./etcd-paths.ts";
import { benchLease, benchNetwork } from "./leases.ts";

const API_IP = "198.18.254.2";

export interface KubePathOptions {
  readonly binary: string;
  readonly backend: string;
  readonly n: number;
  readonly paths: readonly PathName[];
  readonly log: (s: string) => void;
  readonly keepLogs?: string;
}

export async function kubePaths(o: KubePathOptions): Promise<PathResult[]> {
  const lab = new Lab("bkp");
  const out: PathResult[] = [];
  let agent: AgentRun | null = null;
  const net = benchNetwork(o.n);
  try {
    const api = await startKubeApiServerInNamespace(lab, {
      ip: API_IP,
      tls: true,
      token: "bench",
      historyLimit: 2 * o.n + 1000,
    });
    const kubeconfig = writeKubeconfig(join(lab.dir, "kubeconfig"), api, "bench");
    const netConf = join(lab.dir, "net-conf.json");
    writeFileSync(netConf, net.json);
    // our own Node takes the network's last subnet, which no other Node has
    const last = (net.base + 2 ** 32 / 2 ** (net.datapath ? 16 : 8) - 2 ** (32 - net.subnetLen)) >>> 0;
    const node = await lab.addNode();
    await api.createNode(
      makeNode({
        name: "self",
        podCIDR: `${formatIp4(last)}/${net.subnetLen}`,
        internalIp: node.ip,
        realistic: true,
      }),
    );
    o.log(`  creating ${o.n} Nodes`);
    await createPeerNodes(api, net, o.n);
    const load = loadAverage();
    const t0 = Date.now();
    const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}`;
    lab.bpffsDirs.push(bpffs);
    const p = lab.spawn(
      node.ns,
      "agent",
      [
        o.binary,
        "agent",
        "--kube-subnet-mgr",
        `--kubeconfig-file=${kubeconfig}`,
        `--net-config-path=${netConf}`,
        `--backend=${o.backend}`,
        "--iface=eth0",
        `--subnet-file=${join(lab.dir, "subnet.env")}`,
        "--http=127.0.0.1:8471",
        `--bpffs=${bpffs}`,
        `--state-dir=${lab.dir}/state`,
        "--log-level=info",
      ],
      { NODE_NAME: "self" },
    );
    agent = new AgentRun(lab, node.ns, p);
    const health = new HealthzProbe(lab, node.ns, "agent-kube-list");
    const listed = await agent.programmed(0, (a) => a.some((x) => x.total >= o.n), "kube list", 600_000);
    const listCpu = agent.cpu();
    const listProbes = await health.stop();
    await Bun.sleep(2000);
    const afterList = agent.memory();
    const answered = listProbes.find(([, , s]) => s === 200)?.[0] ?? t0;
    const h = healthzFigures(listProbes, answered, listed);
    out.push({
      path: "kube-list",
      backend: o.backend,
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
      const rssBefore = agent.memory().rss;
      const health2 = new HealthzProbe(lab, node.ns, "agent-kube-burst");
      await Bun.sleep(200);
      const cpu0 = agent.cpu();
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
      const done = await agent.programmed(
        first,
        (a) => a.reduce((s, x) => s + x.updated, 0) >= o.n,
        `kube burst: ${o.n} updates programmed`,
        600_000,
      );
      const cpuS = agent.cpu() - cpu0;
      const probes = await health2.stop();
      await Bun.sleep(2000);
      const mem = agent.memory();
      const h2 = healthzFigures(probes, first, done);
      out.push({
        path: "kube-burst",
        backend: o.backend,
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
    if (agent) await lab.stop(agent.proc, "SIGTERM", 10_000);
    if (o.keepLogs && agent) {
      mkdirSync(o.keepLogs, { recursive: true });
      copyFileSync(agent.proc.logPath, join(o.keepLogs, `kube-${o.backend}-${o.n}.log`));
    }
    await lab.cleanup();
  }
}

/**
 * Nodes node-0 … node-(n−1) on the stand-in API server, as flanneld's vxlan nodes annotate
 * them (realistic Nodes: managedFields, images, conditions), each with the bench network's
 * subnet i; created 1,000 a request.
 */
export async function createPeerNodes(
  api: { createNodes(nodes: unknown[]): Promise<unknown> },
  net: ReturnType<typeof benchNetwork>,
  n: number,
): Promise<void> {
  const cidr = (i: number) => benchLease(net, i).key.replace(/-(\d+)$/, "/$1");
  const ipOf = (i: number) => `198.18.${((i + 10) >> 8) & 255}.${(i + 10) & 255}`;
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 1000); j++)
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
}
