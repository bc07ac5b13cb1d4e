/**
 * The agent's idle memory with --kube-subnet-mgr: `dist/tartan agent` (ebpf-vxlan, as the
 * manifest runs it) in a node namespace against the STAND-IN API server (its own process
 * in its own namespace, HTTPS with a token), with N other Nodes that are all leases
 * (realistic Node objects, about 6 KB of JSON each: test/helpers/kube-nodes.ts; /30
 * podCIDRs so 10,000 fit the lab's 198.19.0.0/16). For each N: start the agent, wait
 * until it is ready with every lease programmed, let it idle 10 s, read VmRSS, RssAnon
 * and RssFile from /proc/PID/status. The same agent on a sqlite registry holding the same
 * leases is the comparison. Root; everything is removed afterwards. BENCH_TRACE=1 also
 * prints RSS and the agent's child processes every 5 s for a minute after that.
 * Usage: node_modules/.bin/bun bench/kube-agent.ts [N ...]   (default 2 10000)
 * Results: docs/kubernetes-client.md.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatIp4 } from "../src/config/cidr.ts";
import { silentLogger } from "../src/log.ts";
import { SqliteRegistry } from "../src/registry/sqlite.ts";
import { startKubeApiServerInNamespace, writeKubeconfig } from "../test/helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../test/helpers/kube-nodes.ts";
import { Lab, type LabProcess, until } from "../test/helpers/netns.ts";
import { requireBinary, status, tartan } from "../test/helpers/tartan.ts";

const IDLE_MS = 10_000;
const counts = process.argv.slice(2).map(Number);
const NS = counts.length ? counts : [2, 10_000];

function rss(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? Number.NaN);
  return { rss: kb("VmRSS") / 1024, anon: kb("RssAnon") / 1024, file: kb("RssFile") / 1024 };
}

/** The i-th other Node: a /30 podCIDR, its own public IP and VTEP MAC, flannel's annotations. */
function otherNode(i: number) {
  const sn = (0xc6130000 + i * 4) >>> 0; // 198.19.0.0 + 4i
  const ip = `198.18.${100 + (i >> 8)}.${i & 255}`;
  return makeNode({
    name: `node-${i}`,
    podCIDR: `${formatIp4(sn)}/30`,
    internalIp: ip,
    annotations: flanneldVxlanAnnotations(ip, macFor(i)),
    realistic: true,
  });
}

/** The agent as the manifest runs it (ebpf-vxlan, --ip-masq), with `source` choosing where leases come from. */
function startAgent(lab: Lab, ns: string, source: string[], env: Record<string, string> = {}): LabProcess {
  const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}`;
  lab.bpffsDirs.push(bpffs);
  return lab.spawn(
    ns,
    "agent",
    [
      requireBinary(),
      "agent",
      "--ip-masq",
      ...source,
      "--backend=ebpf-vxlan",
      "--iface=eth0",
      `--subnet-file=${join(lab.dir, "subnet.env")}`,
      "--http=127.0.0.1:8471",
      `--bpffs=${bpffs}`,
      `--state-dir=${lab.dir}`,
    ],
    env,
  );
}

async function settle(lab: Lab, ns: string, agent: LabProcess, leases: number): Promise<void> {
  await until(
    async () => {
      if (agent.proc.exitCode !== null) throw new Error(`agent exited: ${await lab.log(agent)}`);
      const s = await status(lab, ns).catch(() => null);
      return s?.ready.ok && s.counts.leases === leases && s.counts.programmed === leases - 1;
    },
    `the agent to be ready with ${leases} leases`,
    300_000,
  );
  await Bun.sleep(IDLE_MS);
  if (process.env.BENCH_TRACE)
    for (let t = 0; t < 12; t++) {
      const kids = Bun.spawnSync(["pgrep", "-c", "-P", String(agent.proc.pid)])
        .stdout.toString()
        .trim();
      console.error(
        `+${10 + t * 5}s rss=${rss(agent.proc.pid).rss.toFixed(1)} anon=${rss(agent.proc.pid).anon.toFixed(1)} children=${kids}`,
      );
      await Bun.sleep(5000);
    }
}

async function kubeRun(n: number): Promise<ReturnType<typeof rss>> {
  const lab = new Lab("kagent");
  try {
    const api = await startKubeApiServerInNamespace(lab, { ip: "198.18.254.2", tls: true, token: "bench" });
    const node = await lab.addNode();
    const kubeconfig = join(lab.dir, "kubeconfig");
    writeKubeconfig(kubeconfig, api, "bench");
    const netConf = join(lab.dir, "net-conf.json");
    writeFileSync(netConf, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
    await api.createNode(
      makeNode({ name: "self", podCIDR: "198.19.255.252/30", internalIp: node.ip, realistic: true }),
    );
    for (let i = 1; i <= n; i += 500) {
      const chunk = [];
      for (let j = i; j < Math.min(i + 500, n + 1); j++) chunk.push(otherNode(j));
      await api.createNodes(chunk);
    }
    const agent = startAgent(
      lab,
      node.ns,
      ["--kube-subnet-mgr", `--kubeconfig-file=${kubeconfig}`, `--net-config-path=${netConf}`],
      { NODE_NAME: "self" },
    );
    await settle(lab, node.ns, agent, n + 1);
    const r = rss(agent.proc.pid);
    await lab.stop(agent);
    await api.close();
    return r;
  } finally {
    await lab.cleanup();
  }
}

/** The same agent on a sqlite registry holding the same `n` peers as leases (/30s), for comparison. */
async function sqliteRun(n: number): Promise<ReturnType<typeof rss>> {
  const lab = new Lab("kagentsq");
  try {
    const node = await lab.addNode();
    const path = join(lab.dir, "registry.db");
    const reg = `sqlite:${path}`;
    const netConf = join(lab.dir, "net-conf.json");
    writeFileSync(
      netConf,
      JSON.stringify({ Network: "198.19.0.0/16", SubnetLen: 30, Backend: { Type: "vxlan" } }),
    );
    await tartan(["config", "set", netConf, `--registry=${reg}`]);
    const r = SqliteRegistry.open({ path, log: silentLogger });
    const entries = [];
    for (let i = 1; i <= n; i++) {
      const ip = `198.18.${100 + (i >> 8)}.${i & 255}`;
      entries.push({
        key: `${formatIp4((0xc6130000 + i * 4) >>> 0)}-30`,
        value: `{"PublicIP":"${ip}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${macFor(i)}"}}`,
        ttlMs: 24 * 3600_000,
      });
    }
    r.createMany(entries);
    await r.close();
    const agent = startAgent(lab, node.ns, [`--registry=${reg}`]);
    await settle(lab, node.ns, agent, n + 1);
    const m = rss(agent.proc.pid);
    await lab.stop(agent);
    return m;
  } finally {
    await lab.cleanup();
  }
}

const f = (x: number) => x.toFixed(1);
const rows: string[] = [];
for (const n of NS) {
  const k = await kubeRun(n);
  rows.push(`| --kube-subnet-mgr, ${n + 1} Nodes (${n} peers) | ${f(k.rss)} | ${f(k.anon)} | ${f(k.file)} |`);
  const s = await sqliteRun(n);
  rows.push(`| sqlite registry, ${n + 1} leases (${n} peers) | ${f(s.rss)} | ${f(s.anon)} | ${f(s.file)} |`);
}
console.log("| agent (ebpf-vxlan), idle 10 s after ready | RSS MiB | anon MiB | file MiB |");
console.log("|---|---|---|---|");
for (const r of rows) console.log(r);
