/**
 * Faults: the etcd registry goes away and comes back. etcd stopped for a while, then
 * started on its data (5 s in CI, 30 s with TARTAN_SOAK=1); etcd restarted at once;
 * etcd's history compacted, also past the revision a reconnecting watch resumes from.
 * Targets: zero packets lost (the datapath keeps what it has while the registry is
 * away) and, after etcd answers again, every agent back to "registry ok" and seeing a
 * lease written after the return (convergence, measured; the target is 2 s).
 */
import { afterAll, beforeAll, describe, expect, mock, test } from "bun:test";
import type { Cluster } from "../helpers/cluster.ts";
import * as etcdHelper from "../helpers/etcd.ts";
import { until } from "../helpers/netns.ts";
import { isRoot, status } from "../helpers/tartan.ts";
import { TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, expectZeroLoss, faultCluster, SOAK, timed } from "./report.ts";

// The cluster harness keeps its etcd to itself; capture it as the harness starts it.
let etcd: etcdHelper.TestEtcd | null = null;
const realStartEtcd = etcdHelper.startEtcd;
mock.module("../helpers/etcd.ts", () => ({
  ...etcdHelper,
  startEtcd: async (o?: etcdHelper.StartEtcdOptions) => {
    const e = await realStartEtcd(o);
    etcd = e;
    return e;
  },
}));

const REGISTRY = "etcd" as const;
const OUTAGE_MS = SOAK ? 30_000 : 5_000;
const PREFIX = "/coreos.com/network/subnets";
/** Probe leases: valid records of nodes that do not exist, written to see changes propagate. */
const probeValue = (i: number) =>
  JSON.stringify({
    PublicIP: `198.18.1.${i}`,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: `0e:00:00:00:01:${i.toString(16).padStart(2, "0")}` },
  });
const probeKey = (i: number) => `198.19.${200 + i}.0-24`;
const probeCidr = (i: number) => `198.19.${200 + i}.0/24`;

describe.skipIf(!isRoot() || !backendAvailable())(`faults: etcd (${BACKEND})`, () => {
  let cl: Cluster;
  beforeAll(async () => {
    cl = await faultCluster(REGISTRY, { tag: "fe" });
    if (!etcd) throw new Error("the cluster's etcd was not captured");
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });
  const e = () => etcd!;

  /** Every agent reports the registry ok, is ready, and sees exactly the probes in `want` (and not `gone`). */
  const agentsSee = (want: number[], gone: number[] = []) =>
    until(
      async () => {
        for (const n of cl.nodes) {
          const s = await status(cl.lab, n.ns);
          if (s.registry.state !== "ok" || !s.ready.ok) return false;
          const subnets = new Set(s.leases.map((l) => l.subnet));
          if (!want.every((i) => subnets.has(probeCidr(i)))) return false;
          if (gone.some((i) => subnets.has(probeCidr(i)))) return false;
        }
        return true;
      },
      `every agent to be ready with probes [${want}] and without [${gone}]`,
      60_000,
    );

  const states = async () => {
    const out: string[] = [];
    for (const n of cl.nodes) {
      const s = await status(cl.lab, n.ns).catch(() => null);
      out.push(s ? `${s.registry.state}/${s.health.ok ? "healthy" : "unhealthy"}` : "no answer");
    }
    return out;
  };

  const relists = async () => {
    let n = 0;
    for (const node of cl.nodes) n += ((await cl.lab.log(node.agent)).match(/re-listing/g) ?? []).length;
    return n;
  };

  const finish = (
    fault: string,
    r: Awaited<ReturnType<TrafficMonitor["stop"]>>,
    convergeMs: number,
    detail: Record<string, unknown>,
  ) => expectZeroLoss(fault, REGISTRY, r, convergeMs, detail);

  test(`etcd stopped for ${OUTAGE_MS / 1000} s, then started: 0 lost, agents converge`, async () => {
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    await e().stop();
    // the fault itself: an outage of this length
    await Bun.sleep(OUTAGE_MS);
    const during = await states();
    await e().start();
    const { ms } = await timed(async () => {
      await e().etcdctl(["put", `${PREFIX}/${probeKey(1)}`, probeValue(1)]);
      await agentsSee([1]);
    });
    await Bun.sleep(500);
    finish(`etcd stopped ${OUTAGE_MS / 1000} s, then started`, await mon.stop(), ms, {
      outageMs: OUTAGE_MS,
      agentsDuringOutage: during,
    });
    // agents stay alive through the outage
    expect(cl.nodes.map((n) => n.agent.proc.exitCode)).toEqual(cl.nodes.map(() => null));
  }, 120_000);

  test("etcd restarted with its data: 0 lost, agents converge", async () => {
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    await e().stop();
    await e().start();
    const { ms } = await timed(async () => {
      await e().etcdctl(["put", `${PREFIX}/${probeKey(2)}`, probeValue(2)]);
      await agentsSee([1, 2]);
    });
    await Bun.sleep(500);
    finish("etcd restarted with its data", await mon.stop(), ms, {});
  }, 120_000);

  test("etcd compaction while agents watch: nothing lost, later changes still arrive", async () => {
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    await e().etcdctl(["del", `${PREFIX}/${probeKey(2)}`]);
    await e().compact();
    const { ms } = await timed(async () => {
      await e().etcdctl(["put", `${PREFIX}/${probeKey(3)}`, probeValue(3)]);
      await agentsSee([1, 3], [2]);
    });
    await Bun.sleep(500);
    finish("etcd compaction (agents watching)", await mon.stop(), ms, {});
  }, 120_000);

  test("etcd compacted past the revision a reconnecting watch resumes from: every agent re-lists, nothing missed", async () => {
    const etcdNs = cl.lab.namespaces.find((ns) => ns.endsWith("-etcd"))!;
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    const before = await relists();
    // cut the nodes off etcd (etcdctl, local to etcd's namespace, still gets through) and
    // restart etcd so no watch stream survives: every watch now retries from its revision
    const block = ["nft", "add", "table", "inet", "faultblock"];
    await cl.lab.must(etcdNs, block);
    await cl.lab.must(etcdNs, [
      "nft",
      "add chain inet faultblock input { type filter hook input priority 0 ; policy accept ; }",
    ]);
    await cl.lab.must(etcdNs, [
      "nft",
      "add rule inet faultblock input ip saddr 198.18.0.0/24 tcp dport 2379 reject with tcp reset",
    ]);
    try {
      await e().stop();
      await e().start();
      // changes the watches have not seen, then their history compacted away
      await e().etcdctl(["del", `${PREFIX}/${probeKey(1)}`]);
      await e().etcdctl(["put", `${PREFIX}/${probeKey(4)}`, probeValue(4)]);
      await e().compact();
    } finally {
      await cl.lab.must(etcdNs, ["nft", "delete", "table", "inet", "faultblock"]);
    }
    const { ms } = await timed(() => agentsSee([3, 4], [1, 2]));
    await Bun.sleep(500);
    const relisted = (await relists()) - before;
    finish("etcd compacted past a reconnecting watch", await mon.stop(), ms, {
      agentsThatRelisted: relisted,
    });
    expect(relisted).toBeGreaterThanOrEqual(cl.nodes.length);
    // clean up the probes: the cluster goes back to its three nodes
    await e().etcdctl(["del", `${PREFIX}/${probeKey(3)}`]);
    await e().etcdctl(["del", `${PREFIX}/${probeKey(4)}`]);
    await cl.waitConverged(30_000);
  }, 120_000);
});
