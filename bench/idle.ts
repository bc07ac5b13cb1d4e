/**
 * Idle cost of an agent: CPU time (utime + stime from /proc/PID/stat, the agent and the
 * children it waited for) of node 1's agent over a quiet window, per backend, in a
 * two-node cluster with one pod per node that sends nothing. Prints one line per backend.
 *   bun bench/idle.ts [--seconds=60] [--backends=ebpf-vxlan,vxlan,host-gw,alloc] [--registry=sqlite|etcd]
 * Run as root after scripts/build; the machine's load average is printed with the figures.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { Cluster } from "../test/helpers/cluster.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    backends: { type: "string", default: "ebpf-vxlan,vxlan,host-gw" },
    settle: { type: "string", default: "10" },
    registry: { type: "string", default: "sqlite" },
  },
});
const seconds = Number(values.seconds);
const settle = Number(values.settle);
const TICK = 100; // USER_HZ

/** utime + stime + cutime + cstime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields 14–17 of stat(5), counted from 3 after the command name
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK;
}

for (const backend of values.backends!.split(",")) {
  const cl = await Cluster.create({
    backends: [backend, backend],
    registry: values.registry as "sqlite" | "etcd",
    pods: "manual",
    tag: "idle",
  });
  try {
    await Bun.sleep(settle * 1000);
    const pid = cl.nodes[0]!.agent.proc.pid;
    const load0 = loadavg()[0]!;
    const c0 = cpuSeconds(pid);
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const cpu = cpuSeconds(pid) - c0;
    const wall = (performance.now() - t0) / 1000;
    console.log(
      `${backend} (${values.registry}): ${((cpu / wall) * 100).toFixed(3)}% of a core (${cpu.toFixed(2)} CPU-s in ${wall.toFixed(0)} s; load ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)})`,
    );
  } finally {
    await cl.close();
  }
}
