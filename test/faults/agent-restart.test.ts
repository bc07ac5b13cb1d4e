/**
 * Faults: the agent dies and comes back. SIGKILL and restart on one node; on every node at
 * once; an upgrade (the binary file replaced on disk, then the agent restarted from it).
 * Target: zero packets lost — the datapath stays in place while no agent runs — and the
 * TCP stream intact; convergence (agent ready and every lease programmed) is measured.
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { copyFileSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Cluster, ClusterNode } from "../helpers/cluster.ts";
import { isRoot, requireBinary, waitReady } from "../helpers/tartan.ts";
import { TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, expectZeroLoss, faultCluster, timed } from "./report.ts";

const REGISTRY = "sqlite" as const;

describe.skipIf(!isRoot() || !backendAvailable())(`faults: agent restart (${BACKEND})`, () => {
  let cl: Cluster;
  let gen = 0;
  beforeAll(async () => {
    cl = await faultCluster(REGISTRY, { tag: "fr" });
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });

  /** Starts the node's agent again (from `binary`, default dist/tartan) and waits until it is ready. */
  const restart = async (n: ClusterNode, binary?: string) => {
    const name = `agent-${n.index}`;
    if (binary === undefined) n.agent = cl.startAgent(n, name);
    else
      n.agent = cl.lab.spawn(n.ns, `${name}-gen${++gen}`, [
        binary,
        "agent",
        `--backend=${n.backend}`,
        cl.registryFlag,
        "--iface=eth0",
        `--node-name=${name}`,
        `--subnet-file=${n.subnetFile}`,
        "--http=127.0.0.1:8471",
        `--bpffs=${n.bpffs}`,
        `--state-dir=${cl.lab.dir}/state`,
      ]);
    await waitReady(cl.lab, n.ns, n.agent, 8471, 60_000);
  };

  const check = (fault: string, r: Awaited<ReturnType<TrafficMonitor["stop"]>>, convergeMs: number) =>
    expectZeroLoss(fault, REGISTRY, r, convergeMs, { tcpStallMs: r.tcp.longestStallMs });

  test("agent SIGKILL and restart on one node: 0 packets lost", async () => {
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    const n = cl.nodes[1]!;
    await cl.lab.stop(n.agent, "SIGKILL");
    // traffic keeps flowing with no agent at all
    await Bun.sleep(1000);
    const { ms } = await timed(async () => {
      await restart(n);
      await cl.waitConverged(60_000);
    });
    await Bun.sleep(1000);
    check("agent SIGKILL + restart, one node", await mon.stop(), ms);
  }, 120_000);

  test("agent SIGKILL and restart on every node at once: 0 packets lost", async () => {
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    await Promise.all(cl.nodes.map((n) => cl.lab.stop(n.agent, "SIGKILL")));
    await Bun.sleep(1000);
    const { ms } = await timed(async () => {
      await Promise.all(cl.nodes.map((n) => restart(n)));
      await cl.waitConverged(60_000);
    });
    await Bun.sleep(1000);
    check("agent SIGKILL + restart, all nodes at once", await mon.stop(), ms);
  }, 120_000);

  test("upgrade: binary file replaced, agent restarted from it: 0 packets lost", async () => {
    const n = cl.nodes[2]!;
    const dir = join(cl.lab.dir, "upgrade");
    mkdirSync(dir, { recursive: true });
    const bin = join(dir, "tartan");
    copyFileSync(requireBinary(), bin);
    // the "old" agent runs from the installed path
    await cl.lab.stop(n.agent, "SIGTERM");
    await restart(n, bin);
    await cl.waitConverged(60_000);
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    // swap the file as a package manager does (new file, atomic rename), then restart
    copyFileSync(requireBinary(), `${bin}.new`);
    renameSync(`${bin}.new`, bin);
    await cl.lab.stop(n.agent, "SIGTERM");
    const { ms } = await timed(async () => {
      await restart(n, bin);
      await cl.waitConverged(60_000);
    });
    await Bun.sleep(1000);
    check("upgrade (binary swapped, restart)", await mon.stop(), ms);
  }, 120_000);
});
