/**
 * The send fast path at the pod, end to end with the real agent (ebpf-vxlan, two nodes):
 * tartan_encap_pod on each pod's host-side veth encapsulates pod traffic to other nodes
 * before it reaches the bridge. Checked for pods however they were attached — `tartan
 * cni` ADD (program on the veth at ADD, before the pod sends anything), the plain
 * `bridge` plugin called directly (found when it talks), a pod that existed before a
 * fresh agent started (found on the agent's first read) — by the counters: the pod block
 * rises, the bridge program's does not. Then an agent SIGKILLed and restarted under
 * 100 pings/s and a paced TCP stream loses nothing and ends with its own program on every
 * veth; a pod whose MTU exceeds the overlay's gets "fragmentation needed" at the veth's
 * fallback and its TCP finds the path MTU; and `tartan cleanup` leaves no program on
 * any veth. Needs root and dist/tartan.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROGRAMS } from "../../src/bpf/abi.ts";
import { attachments, hooked } from "../helpers/bpf-attachments.ts";
import { Cluster, type ClusterNode } from "../helpers/cluster.ts";
import { pinnedCounters } from "../helpers/ebpf-lab.ts";
import { until } from "../helpers/netns.ts";
import { addPodViaBridgePlugin, addPodViaCni, type Pod, ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, waitReady } from "../helpers/tartan.ts";
import { summary, TrafficMonitor } from "../helpers/traffic-monitor.ts";

const DRIVER = `${import.meta.dir}/../helpers/ebpf-driver.ts`;

/** PIDs of a process's children (every thread's). */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
  );
}

/** Gone, or a zombie its new parent has not reaped yet. */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");

describe.skipIf(!isRoot())("the send fast path at the pod (ebpf-vxlan)", () => {
  let cl: Cluster;
  let n1: ClusterNode;
  let n2: ClusterNode;
  /** Pods by the way they were made. */
  const pods = {} as Record<"cni1" | "cni2" | "br1" | "before", Pod>;

  beforeAll(async () => {
    requireBinary();
    cl = await Cluster.create({ backends: ["ebpf-vxlan", "ebpf-vxlan"], podsPerNode: 0, tag: "pfp" });
    [n1, n2] = cl.nodes as [ClusterNode, ClusterNode];
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  }, 30_000);

  const viaCni = (n: ClusterNode, name: string) =>
    addPodViaCni(cl.lab, n, n.subnetFile, { binary: requireBinary(), name });

  /**
   * The id of the one program on the veth's TC ingress (through tcx: never a clsact
   * qdisc on a pod's veth), or null; more than one, or any other hook, fails.
   */
  const programOn = async (n: ClusterNode, veth: string) => {
    const on = (await hooked(cl.lab, n.ns)).filter((h) => h.dev === veth);
    expect(on.map((h) => h.hook)).toEqual(on.length === 0 ? [] : ["tcx/ingress"]);
    return on[0]?.id ?? null;
  };
  /** The id of the program the node's agent pinned (the one it attaches). */
  const pinnedId = async (n: ClusterNode, prog: string = PROGRAMS.encapPod) =>
    (
      JSON.parse(
        await cl.lab.must(n.ns, ["bpftool", "-j", "prog", "show", "pinned", `${n.bpffs}/progs/${prog}`]),
      ) as { id: number }
    ).id;

  /** Sends `count` pings from `from` to `to` and returns how the counters of `n` moved. */
  const pingCounted = async (n: ClusterNode, from: Pod, to: Pod, count = 50) => {
    const before = pinnedCounters(n.bpffs);
    const r = await ping(cl.lab, from.ns, to.ip, { count, interval: 0.01, timeoutS: 2 });
    expect(r.received).toBe(count);
    const after = pinnedCounters(n.bpffs);
    return (name: string) => after[name]! - before[name]!;
  };

  test("a pod added by `tartan cni` has its veth's program from ADD on, and reaches other nodes without the bridge", async () => {
    pods.cni1 = await viaCni(n1, "cni1");
    pods.cni2 = await viaCni(n2, "cni2");
    // before a single packet: the plugin attached it through the agent's pins
    for (const [n, p] of [
      [n1, pods.cni1],
      [n2, pods.cni2],
    ] as const)
      expect(await programOn(n, p.hostVeth)).toBe(await pinnedId(n));
    const moved1 = await pingCounted(n1, pods.cni1, pods.cni2);
    expect(moved1("pod_encap_ok")).toBeGreaterThanOrEqual(50);
    expect(moved1("encap_ok") + moved1("encap_ok_neigh")).toBe(0);
    expect(moved1("decap_redirect_peer")).toBeGreaterThanOrEqual(50);
    // and the replies left node 2 the same way
    const moved2 = await pingCounted(n2, pods.cni2, pods.cni1);
    expect(moved2("pod_encap_ok")).toBeGreaterThanOrEqual(50);
    expect(moved2("encap_ok") + moved2("encap_ok_neigh")).toBe(0);
  }, 60_000);

  test("a pod made by the plain bridge plugin is found on the bridge when it talks, then takes the fast path", async () => {
    pods.br1 = await addPodViaBridgePlugin(cl.lab, n1, n1.subnetFile, { name: "br1" });
    expect(await programOn(n1, pods.br1.hostVeth)).toBeNull();
    // the bridge carries its first packets (and the agent learns it from them)
    expect((await ping(cl.lab, pods.br1.ns, pods.cni2.ip, { count: 2 })).received).toBe(2);
    const id = await pinnedId(n1);
    await until(
      async () => (await programOn(n1, pods.br1.hostVeth)) === id,
      "the agent to attach the pod program to the bridge-plugin pod's veth",
      10_000,
    );
    const moved = await pingCounted(n1, pods.br1, pods.cni2);
    expect(moved("pod_encap_ok")).toBeGreaterThanOrEqual(50);
    expect(moved("encap_ok") + moved("encap_ok_neigh")).toBe(0);
  }, 60_000);

  test("pods that existed before a fresh agent started are found on its first read, without new traffic", async () => {
    // node 2 loses its agent and its whole datapath (programs, pins, overlay device)
    await cl.lab.stop(n2.agent, "SIGTERM");
    const bun = process.execPath;
    const clean = await cl.lab.exec(n2.ns, [bun, DRIVER, "--cleanup", "--iface=eth0", `--bpffs=${n2.bpffs}`]);
    expect(clean.stdout).toContain("cleaned");
    expect(await programOn(n2, pods.cni2.hostVeth)).toBeNull();
    // a pod made while no agent runs, which talks to its gateway only
    pods.before = await addPodViaBridgePlugin(cl.lab, n2, n2.subnetFile, { name: "before" });
    const gw = (await cl.lab.must(n2.ns, ["ip", "-4", "-o", "addr", "show", "dev", "cni0"])).split(/\s+/)[3]!;
    expect((await ping(cl.lab, pods.before.ns, gw.split("/")[0]!, { count: 2 })).received).toBe(2);

    n2.agent = cl.startAgent(n2, `agent-${n2.index}`);
    await waitReady(cl.lab, n2.ns, n2.agent, 8471, 30_000);
    const id = await pinnedId(n2);
    await until(
      async () =>
        (await programOn(n2, pods.before.hostVeth)) === id &&
        (await programOn(n2, pods.cni2.hostVeth)) === id,
      "the fresh agent to attach the pod program to both existing pods' veths",
      10_000,
    );
    await cl.waitConverged(30_000);
    const moved = await pingCounted(n2, pods.before, pods.cni1);
    expect(moved("pod_encap_ok")).toBeGreaterThanOrEqual(50);
    expect(moved("encap_ok") + moved("encap_ok_neigh")).toBe(0);
  }, 90_000);

  test("an agent SIGKILLed and restarted under 100 pings/s and a TCP stream loses nothing; every veth ends with the new agent's program", async () => {
    const mon = await TrafficMonitor.start(cl.lab, [
      { ns: n1.ns, pods: [pods.cni1] },
      { ns: n2.ns, pods: [pods.cni2] },
    ]);
    const old = await pinnedId(n1);
    // the agent's one `ip monitor` child goes with it, SIGKILL included
    const monitor = childrenOf(n1.agent.proc.pid).find((pid) => cmdline(pid).includes("monitor"));
    expect(monitor).toBeDefined();
    await cl.lab.stop(n1.agent, "SIGKILL");
    await until(() => exited(monitor!), "the killed agent's ip monitor to exit", 5_000);
    // a second with no agent at all: the pinned datapath carries the traffic alone
    await Bun.sleep(1000);
    n1.agent = cl.startAgent(n1, `agent-${n1.index}`);
    await waitReady(cl.lab, n1.ns, n1.agent, 8471, 30_000);
    const id = await pinnedId(n1);
    expect(id).not.toBe(old);
    await until(
      async () =>
        (await programOn(n1, pods.cni1.hostVeth)) === id && (await programOn(n1, pods.br1.hostVeth)) === id,
      "the restarted agent's program on the pod veths",
      10_000,
    );
    await Bun.sleep(500);
    const r = await mon.stop();
    expect({ lost: r.lost, tcpIntact: r.tcpIntact, summary: summary(r) }).toEqual({
      lost: 0,
      tcpIntact: true,
      summary: summary(r),
    });
    expect(r.sent).toBeGreaterThan(200);
  }, 90_000);

  test("a pod with a larger MTU than the overlay's: DF → frag-needed (mtu 1450), no DF → fragmented; its TCP finds the path MTU", async () => {
    const p = await viaCni(n1, "bigmtu");
    for (const [ns, dev] of [
      [n1.ns, p.hostVeth],
      [p.ns, "eth0"],
    ] as const)
      await cl.lab.must(ns, ["ip", "link", "set", dev, "mtu", "1500"]);
    const before = pinnedCounters(n1.bpffs);
    const df = await cl.lab.exec(p.ns, [
      "ping",
      "-n",
      "-c",
      "1",
      "-W",
      "2",
      "-M",
      "do",
      "-s",
      "1472",
      pods.cni2.ip,
    ]);
    expect(df.stdout + df.stderr).toContain("mtu = 1450");
    const frag = await ping(cl.lab, p.ns, pods.cni2.ip, { count: 3 });
    expect(frag.received).toBe(3);
    const noDf = await cl.lab.exec(p.ns, [
      "ping",
      "-n",
      "-c",
      "3",
      "-i",
      "0.2",
      "-W",
      "2",
      "-M",
      "dont",
      "-s",
      "1472",
      pods.cni2.ip,
    ]);
    expect(noDf.stdout).toContain(" 0% packet loss");
    expect(pinnedCounters(n1.bpffs).pod_pass_too_big! - before.pod_pass_too_big!).toBeGreaterThan(0);

    // TCP from the 1500-MTU pod: the first full-size segments get frag-needed, then it fits
    const port = "5405";
    const server = cl.lab.spawn(pods.cni2.ns, `iperf3-pmtu`, ["iperf3", "-s", "-1", "-p", port]);
    await until(
      async () =>
        (await cl.lab.exec(pods.cni2.ns, ["ss", "-ltn", `sport = :${port}`])).stdout.includes(port) ||
        undefined,
      "iperf3 server listening",
    );
    const r = await cl.lab.exec(p.ns, ["iperf3", "-c", pods.cni2.ip, "-p", port, "-n", "20M", "-J"]);
    await cl.lab.stop(server);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { end: { sum_sent: { bytes: number } } };
    expect(j.end.sum_sent.bytes).toBeGreaterThanOrEqual(20 * 1024 * 1024);
    expect(pinnedCounters(n1.bpffs).pod_encap_ok! - before.pod_encap_ok!).toBeGreaterThan(100);
  }, 60_000);

  test("`tartan cleanup` leaves no program on any veth (the pods' veths still there)", async () => {
    await cl.lab.stop(n1.agent, "SIGTERM");
    const r = await cl.lab.exec(n1.ns, [
      requireBinary(),
      "cleanup",
      `--bpffs=${n1.bpffs}`,
      `--subnet-file=${n1.subnetFile}`,
      `--cni-data-dir=${join(cl.lab.dir, "cleanup", "flannel")}`,
      `--cni-ipam-dir=${join(cl.lab.dir, "cleanup", "networks")}`,
      `--cni-conf-file=${join(cl.lab.dir, "cleanup", "10-tartan.conflist")}`,
      `--cni-bin=${join(cl.lab.dir, "cleanup", "tartan")}`,
      `--docker-env=${join(cl.lab.dir, "cleanup", "docker_opts.env")}`,
    ]);
    expect(r.code).toBe(0);
    expect(await attachments(cl.lab, n1.ns)).toEqual([]);
    for (const p of [pods.cni1, pods.br1])
      expect((await cl.lab.exec(n1.ns, ["ip", "link", "show", p.hostVeth])).code).toBe(0);
  }, 30_000);
});
