/**
 * What an idle agent costs: one agent per backend on etcd (no other node, so no lease but
 * its own), left alone for `seconds` after it is ready — long enough for at least one
 * background doctor run (every minute at this size) and many watchdog checks. CPU-seconds
 * over the span (the `ip`/`bridge`/`ping` children included, and apart), in % of one
 * core, and RSS at the end.
 */
import { join } from "node:path";
import { startEtcd, type TestEtcd } from "../../test/helpers/etcd.ts";
import { Lab } from "../../test/helpers/netns.ts";
import { AgentRun, loadAverage } from "./agent-run.ts";
import { benchNetwork } from "./leases.ts";

export interface IdleResult {
  readonly backend: string;
  readonly seconds: number;
  /** % of one core over the span, children included */
  readonly cpuPct: number;
  /** of cpuPct: the processes the agent ran */
  readonly childCpuPct: number;
  readonly rssMiB: number;
  readonly load: number;
}

const ETCD_IP = "198.18.254.1";

export async function idleCost(binary: string, backend: string, seconds: number): Promise<IdleResult> {
  const lab = new Lab("bid");
  let etcd: TestEtcd | null = null;
  let agent: AgentRun | null = null;
  try {
    const etcdNs = await lab.addHost("etcd", ETCD_IP);
    etcd = await startEtcd({ netns: etcdNs, host: ETCD_IP });
    const net = JSON.parse(benchNetwork(1).json) as { Backend: { Type: string } };
    if (backend === "host-gw") net.Backend.Type = "host-gw";
    await etcd.etcdctl(["put", "/coreos.com/network/config", JSON.stringify(net)]);
    const node = await lab.addNode();
    const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}`;
    lab.bpffsDirs.push(bpffs);
    const p = lab.spawn(node.ns, "n1", [
      binary,
      "agent",
      `--backend=${backend}`,
      `--etcd-endpoints=${etcd.endpoint}`,
      "--iface=eth0",
      "--node-name=n1",
      `--subnet-file=${join(lab.dir, "subnet.env")}`,
      "--http=127.0.0.1:8471",
      `--state-dir=${lab.dir}/state`,
      `--bpffs=${bpffs}`,
    ]);
    agent = new AgentRun(lab, node.ns, p);
    await agent.programmed(0, () => true, "the agent's first apply", 60_000);
    // the start's own work (the first doctor run among it) is not idle cost
    await Bun.sleep(10_000);
    const load = loadAverage();
    const cpu0 = agent.cpu();
    const child0 = agent.childCpu();
    await Bun.sleep(seconds * 1000);
    const cpu = agent.cpu() - cpu0;
    const child = agent.childCpu() - child0;
    return {
      backend,
      seconds,
      cpuPct: (100 * cpu) / seconds,
      childCpuPct: (100 * child) / seconds,
      rssMiB: agent.memory().rss,
      load,
    };
  } finally {
    if (agent) await lab.stop(agent.proc, "SIGTERM", 10_000);
    await etcd?.close();
    await lab.cleanup();
  }
}
