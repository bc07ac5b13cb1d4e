/**
 * Where the Node informer's memory goes: the stand-in API server (its own process and
 * namespace) with N realistic Nodes, and in a node namespace a child process that does
 * what the agent's informer does — KubeLeaseSource.list(), then the watch through a
 * burst that re-annotates every Node — reading its RSS, peak RSS and JSC heap
 * (`bun:jsc` heapStats, after a full GC) at each step, and the objects the lease table
 * keeps. Also, alone, what one list of pages costs when nothing is kept (fetch + parse),
 * to separate the transient from what is held.
 *
 * With --binaries, each agent binary in turn (`tartan agent --kube-subnet-mgr` on the
 * same Nodes) is measured from outside: RSS, anonymous and file-backed memory
 * (/proc/PID/smaps_rollup) 2, 10 and 30 s after it programmed every Node, and its RSS
 * every 20 ms from its start until then (where in the start the peak falls).
 *
 *   bun bench/kube-memory.ts [--nodes=10000] [--page=500] [--binaries=A,B --rounds=N --backend=ebpf-vxlan]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatIp4 } from "../src/config/cidr.ts";
import { parseNetworkConfig } from "../src/config/network.ts";
import { annotationNames } from "../src/kube/annotations.ts";
import { KubeClient } from "../src/kube/client.ts";
import { kubeconfigConnection } from "../src/kube/kubeconfig.ts";
import { KubeLeaseSource } from "../src/kube/lease-source.ts";
import { podNetworks } from "../src/kube/pod-cidr.ts";
import { silentLogger } from "../src/log.ts";
import { startKubeApiServerInNamespace, writeKubeconfig } from "../test/helpers/kube-apiserver.ts";
import { makeNode } from "../test/helpers/kube-nodes.ts";
import { Lab } from "../test/helpers/netns.ts";
import { AgentRun, loadAverage } from "./control-plane/agent-run.ts";
import { createPeerNodes } from "./control-plane/kube-paths.ts";
import { benchNetwork } from "./control-plane/leases.ts";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "10000" },
    page: { type: "string", default: "500" },
    child: { type: "string" },
    /** Also run these agent binaries (comma-separated) against the same Nodes, in turn, `--rounds` times. */
    binaries: { type: "string", default: "" },
    rounds: { type: "string", default: "1" },
    backend: { type: "string", default: "ebpf-vxlan" },
  },
});

const SETTLE_MS = 3000;

interface Reading {
  readonly step: string;
  readonly rssMiB: number;
  readonly peakMiB: number;
  readonly heapMiB: number;
  readonly heapCapacityMiB: number;
  readonly objects: number;
  readonly top: Record<string, number>;
}

async function read(step: string): Promise<Reading> {
  const { heapStats } = await import("bun:jsc");
  Bun.gc(true);
  // the allocators give freed pages back on their own time (a scavenger): read after it
  await Bun.sleep(SETTLE_MS);
  Bun.gc(true);
  const st = heapStats();
  const status = await Bun.file("/proc/self/status").text();
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  const top = Object.fromEntries(
    Object.entries(st.objectTypeCounts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8),
  );
  return {
    step,
    rssMiB: kb("VmRSS"),
    peakMiB: kb("VmHWM"),
    heapMiB: st.heapSize / 2 ** 20,
    heapCapacityMiB: st.heapCapacity / 2 ** 20,
    objects: st.objectCount,
    top,
  };
}

/** The child: runs in a node namespace, prints its readings as JSON on stdout. */
async function child(args: { kubeconfig: string; net: string; nodes: number; page: number; mode: string }) {
  const out: Reading[] = [await read("start")];
  const client = new KubeClient(kubeconfigConnection(args.kubeconfig));
  if (args.mode === "parse-only") {
    // the list's pages fetched and parsed, nothing kept: the transient alone
    let cont = "";
    let n = 0;
    do {
      const page = await client.listNodes({ limit: args.page, continue: cont });
      n += page.items.length;
      cont = page.continue;
    } while (cont !== "");
    out.push(await read(`listed ${n} Nodes, nothing kept`));
  } else {
    const source = new KubeLeaseSource({
      client,
      nodeName: "self",
      names: annotationNames(),
      nets: podNetworks(parseNetworkConfig(args.net)),
      log: silentLogger,
      watch: { pageSize: args.page },
    });
    let records = (await source.list()).records;
    out.push(await read(`listed: ${records.length} leases, the list's records still referenced`));
    records = [];
    out.push(await read("listed, records dropped (the lease table alone)"));
    let puts = 0;
    const w = source.watch(0, {
      onEvents: (evs) => {
        for (const e of evs) if (e.type === "put") puts++;
      },
    });
    writeFileSync(`${args.kubeconfig}.ready`, "");
    const deadline = Date.now() + 600_000;
    while (puts < args.nodes && Date.now() < deadline) await Bun.sleep(100);
    out.push(await read(`watched ${puts} MODIFIED Nodes`));
    w.stop();
    await source.close();
  }
  console.log(JSON.stringify(out));
}

async function main() {
  const n = Number(values.nodes);
  const page = Number(values.page);
  const lab = new Lab("bkm");
  const net = benchNetwork(n);
  try {
    const api = await startKubeApiServerInNamespace(lab, {
      ip: "198.18.254.2",
      tls: true,
      token: "bench",
      historyLimit: 2 * n + 1000,
    });
    const kubeconfig = writeKubeconfig(join(lab.dir, "kubeconfig"), api, "bench");
    const last = (net.base + 2 ** 32 / 2 ** 16 - 2 ** (32 - net.subnetLen)) >>> 0;
    await api.createNode(
      makeNode({ name: "self", podCIDR: `${formatIp4(last)}/${net.subnetLen}`, internalIp: "198.18.0.1" }),
    );
    await createPeerNodes(api, net, n);
    const node = await lab.addNode();
    for (const mode of ["parse-only", "informer"]) {
      const p = lab.spawn(node.ns, `probe-${mode}`, [
        process.execPath,
        import.meta.path,
        `--child=${JSON.stringify({ kubeconfig, net: net.json, nodes: n, page, mode })}`,
      ]);
      if (mode === "informer") {
        const deadline = Date.now() + 600_000;
        while (!(await Bun.file(`${kubeconfig}.ready`).exists())) {
          if (p.proc.exitCode !== null || Date.now() > deadline) throw new Error(await lab.log(p));
          await Bun.sleep(100);
        }
        const names = Array.from({ length: n }, (_, i) => `node-${i}`);
        for (let i = 0; i < n; i += 200)
          await api.annotateNodes(names.slice(i, i + 200), {
            "flannel.alpha.coreos.com/public-ip": "198.18.255.9",
          });
      }
      await p.proc.exited;
      const text = await lab.log(p);
      const json = text.split("\n").find((l) => l.startsWith("[{"));
      if (!json) throw new Error(`probe ${mode} failed: ${text.slice(-2000)}`);
      for (const r of JSON.parse(json) as Reading[])
        console.log(
          `${mode.padEnd(10)} ${r.step.padEnd(62)} RSS ${r.rssMiB.toFixed(1).padStart(6)}  peak ${r.peakMiB
            .toFixed(1)
            .padStart(6)}  heap ${r.heapMiB.toFixed(1).padStart(5)} / ${r.heapCapacityMiB
            .toFixed(1)
            .padStart(5)} MiB  objects ${r.objects}  ${JSON.stringify(r.top)}`,
        );
    }
    const binaries = values.binaries ? values.binaries.split(",") : [];
    for (let round = 1; round <= Number(values.rounds); round++)
      for (const [i, binary] of binaries.entries())
        await measureAgent(lab, node.ns, binary, `${round}-${i}`, kubeconfig, net.json, n);
  } finally {
    await lab.cleanup();
  }
}

/** Rss, Anonymous and file-backed (Rss − Anonymous) in MiB from smaps_rollup. */
function smaps(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? Number.NaN) / 1024;
  return { rss: kb("Rss"), anon: kb("Anonymous"), file: kb("Rss") - kb("Anonymous") };
}

async function measureAgent(
  lab: Lab,
  ns: string,
  binary: string,
  tag: string,
  kubeconfig: string,
  netJson: string,
  n: number,
): Promise<void> {
  const dir = join(lab.dir, `agent-${tag}`);
  const netConf = join(lab.dir, `net-conf-${tag}.json`);
  writeFileSync(netConf, netJson);
  const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}-${tag}`;
  lab.bpffsDirs.push(bpffs);
  const load = loadAverage();
  const t0 = Date.now();
  const p = lab.spawn(
    ns,
    `agent-${tag}`,
    [
      binary,
      "agent",
      "--kube-subnet-mgr",
      `--kubeconfig-file=${kubeconfig}`,
      `--net-config-path=${netConf}`,
      `--backend=${values.backend}`,
      "--iface=eth0",
      `--subnet-file=${dir}/subnet.env`,
      "--http=127.0.0.1:8471",
      `--bpffs=${bpffs}`,
      `--state-dir=${dir}/state`,
      "--log-level=info",
    ],
    { NODE_NAME: "self" },
  );
  const agent = new AgentRun(lab, ns, p);
  // RSS every 20 ms until programmed: where in the start the peak is
  const samples: [number, number][] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling && p.proc.exitCode === null) {
      try {
        samples.push([Date.now() - t0, agent.memory().rss]);
      } catch {}
      await Bun.sleep(20);
    }
  })();
  try {
    const done = await agent.programmed(0, (a) => a.some((x) => x.total >= n), "kube list", 600_000);
    await Bun.sleep(500);
    sampling = false;
    await sampler;
    const timeline: string[] = [];
    for (let i = 0; i < samples.length; i += Math.max(1, Math.floor(samples.length / 30)))
      timeline.push(`${samples[i]![0]}:${samples[i]![1].toFixed(0)}`);
    console.log(`  RSS timeline [ms:MiB] ${timeline.join(" ")} (programmed at ${done - t0})`);
    const row: string[] = [];
    for (const at of [2, 10, 30]) {
      const wait = done + at * 1000 - Date.now();
      if (wait > 0) await Bun.sleep(wait);
      const m = smaps(agent.pid);
      row.push(`+${at}s RSS ${m.rss.toFixed(1)} (anon ${m.anon.toFixed(1)}, file ${m.file.toFixed(1)})`);
    }
    console.log(
      `agent ${tag} ${binary}: listed in ${done - t0} ms, load ${load}; ${row.join("; ")}; peak ${agent
        .memory()
        .peak.toFixed(1)} MiB`,
    );
  } finally {
    await lab.stop(p, "SIGTERM", 10_000);
  }
}

if (values.child) await child(JSON.parse(values.child));
else await main();
