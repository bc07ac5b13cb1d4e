/**
 * The benchmark driver (scripts/bench): builds each two-node setup, measures the data
 * path interleaved (A B C D, A B C D, …) so drift hits every configuration alike, then
 * the control plane; prints the table and writes bench/RESULTS.md and bench/results.svg.
 *   --quick        one short round (< 2 minutes)
 *   --repeats=N    rounds of data-path measurements (default 3)
 *   --seconds=N    length of each measurement (default 5)
 *   --only=a,b     configurations to run (default all)
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { sectionOf } from "./control-plane/report.ts";
import { type ControlPlaneResult, controlPlane } from "./control-plane/sqlite-batch.ts";
import { pingRtt, tcp, tcpRr, udp64 } from "./measure.ts";
import { controlTable, dataTable, type Samples, svgChart, targetsTable } from "./report.ts";
import { build, CONFIGS, type ConfigName, type Topology } from "./topologies.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    repeats: { type: "string" },
    seconds: { type: "string" },
    only: { type: "string" },
    "skip-control-plane": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    `Usage: scripts/bench [--quick] [--repeats=N] [--seconds=N] [--only=${CONFIGS.join(",")}] [--skip-control-plane]`,
  );
  process.exit(0);
}
const quick = values.quick!;
const repeats = Number(values.repeats ?? (quick ? 1 : 3));
const seconds = Number(values.seconds ?? (quick ? 2 : 5));
const configs = (values.only ? values.only.split(",") : [...CONFIGS]) as ConfigName[];
for (const c of configs)
  if (!CONFIGS.includes(c)) {
    console.error(`--only: unknown configuration ${c}; choose from ${CONFIGS.join(", ")}`);
    process.exit(2);
  }
if (!Number.isInteger(repeats) || repeats < 1 || !Number.isFinite(seconds) || seconds < 1) {
  console.error("--repeats and --seconds must be positive whole numbers");
  process.exit(2);
}

const log = (s: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}`);
const samples: Samples = new Map(configs.map((c) => [c, new Map<string, number[]>()]));
const add = (c: ConfigName, id: string, v: number) => {
  const m = samples.get(c)!;
  m.set(id, [...(m.get(id) ?? []), v]);
};

const topologies = new Map<ConfigName, Topology>();
/** round trips behind each latency measurement (ping, sockperf) */
const rtts: number[] = [];
const rrs: number[] = [];
/** 1-minute load average at the start of each round and at the end: other work on the machine */
const loads: number[] = [];
const cleanup = async () => {
  for (const t of topologies.values()) await t.close().catch(() => {});
  topologies.clear();
};
process.on("SIGINT", async () => {
  await cleanup();
  process.exit(130);
});

const started = Date.now();
const cp: ControlPlaneResult[] = [];
try {
  for (const c of configs) {
    log(`building ${c}`);
    topologies.set(c, await build(c));
  }
  // warm-up, the same for every configuration: ARP, bridge FDB and (ebpf-vxlan) the endpoint
  // map, which the agent learns from the bridge within its 1 s scan, settle before round 1;
  // without it the first seconds of tartan-ebpf's first run took the decap-to-stack path
  for (const t of topologies.values())
    await t.lab.exec(t.client.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", t.target]);
  await Bun.sleep(1500);
  for (let round = 1; round <= repeats; round++) {
    loads.push(loadavg()[0]!);
    for (const c of configs) {
      const t = topologies.get(c)!;
      log(`round ${round}/${repeats}: ${c}`);
      const t1 = await tcp(t, 1, seconds);
      add(c, "tcp1", t1.gbps);
      add(c, "cpu", t1.cpuSecPerGbit);
      add(c, "tcp4", (await tcp(t, 4, seconds)).gbps);
      add(c, "udp64", await udp64(t, seconds));
      const l = await pingRtt(t, quick ? 3 : 9);
      add(c, "p50", l.p50us);
      add(c, "p99", l.p99us);
      rtts.push(l.samples);
      // sockperf 3.7 (Debian's) has no IPv6: the -v6 setups show "–" there
      if (!c.endsWith("-v6")) {
        const rr = await tcpRr(t, quick ? 2 : 5);
        add(c, "rr50", rr.p50us);
        add(c, "rr99", rr.p99us);
        rrs.push(rr.samples);
      }
    }
  }
  loads.push(loadavg()[0]!);
  await cleanup();
  if (!values["skip-control-plane"]) {
    const ns = quick ? [1000] : [1000, 10_000];
    for (const n of ns)
      for (const backend of ["ebpf-vxlan", "vxlan"]) {
        if (backend === "ebpf-vxlan" && !configs.includes("tartan-ebpf")) continue;
        if (backend === "vxlan" && !configs.includes("tartan-vxlan")) continue;
        log(`control plane: ${n} leases, ${backend}`);
        cp.push(await controlPlane(backend, n));
      }
  }
} finally {
  await cleanup();
}

const table = dataTable(configs, samples);
const ctable = cp.length ? controlTable(cp) : "(control plane not measured)";
const kernel = Bun.spawnSync(["uname", "-r"]).stdout.toString().trim();
const cmd = `scripts/bench ${process.argv.slice(2).join(" ")}`.trim();
const md = `# Benchmark results

Measured ${new Date().toISOString()} by \`${cmd}\` on ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${kernel}.
Two node namespaces on a veth underlay (MTU 1500) through a bridge namespace, one pod per node, made as flannel's CNI
plugin makes them (the real bridge + host-local plugins; \`tartan cni\` for the Tartan configurations); pod MTU from
subnet.env (1450 with VXLAN, 1500 with host-gw; 1430 in the dual-stack -v6 setups, measured over the pods' IPv6
addresses, their ratios against the IPv4 references). ${repeats} interleaved round(s) of ${seconds} s per measurement; medians,
(min–max) when more than one round. Both nodes share this machine's ${cpus().length} cores, so CPU per Gbit counts sender
and receiver together. Load average (1 min) at the start of each round and at the end: ${loads.map((l) => l.toFixed(2)).join(", ")}
(other work on the machine shares its cores with the benchmark).

## Data path (pod → pod)

${table}

Ratios are plain quotients of the medians: for throughput above 1× is better, for latency and CPU below 1× is better.
RTT: ICMP echo answered by the server pod's kernel, \`ping -i 0\` (one outstanding), ${quick ? 3 : 9} runs of 2,000 per
measurement, the median of the runs' p50 (p99); ${rtts.length ? `${Math.min(...rtts).toLocaleString("en")}–${Math.max(...rtts).toLocaleString("en")}` : "no"} round trips per measurement.
TCP request/response: sockperf ping-pong (64-byte messages, full round trips) with client and server pinned to CPU 0,
${quick ? 2 : 5} runs of 1 s, medians of the runs' p50 (p99), IPv4 only (this sockperf has no IPv6); ${rrs.length ? `${Math.min(...rrs).toLocaleString("en")}–${Math.max(...rrs).toLocaleString("en")}` : "no"} round trips per measurement.

![ratios](results.svg)

## Control plane

${ctable}

"Programmed after delivery" is the agent's own measurement of applying the whole batch to the datapath (its
\`tartan_datapath_last_apply_seconds\`); "registry commit → all programmed" adds the sqlite registry's 100 ms watch poll
and the status polling of the benchmark.

## Targets

${targetsTable(samples, cp)}

Where a target is missed, what was measured and found is in [DATAPATH.md](DATAPATH.md) (data path) and
[CONTROL-PLANE.md](CONTROL-PLANE.md) (programming time and memory); those files are written by hand and
are not regenerated by this script.

Reproduce: \`${cmd}\` (as root; \`--quick\` for a short run).
`;
// the control-plane-at-scale section (scripts/bench --control-plane) is kept as it was
const kept = existsSync(join(import.meta.dir, "RESULTS.md"))
  ? sectionOf(readFileSync(join(import.meta.dir, "RESULTS.md"), "utf8"))
  : null;
writeFileSync(join(import.meta.dir, "RESULTS.md"), kept ? `${md.trimEnd()}\n\n${kept}\n` : md);
writeFileSync(join(import.meta.dir, "results.svg"), svgChart(configs, samples));
console.log(`\n${table}\n\n${ctable}\n`);
log(`wrote bench/RESULTS.md and bench/results.svg in ${Math.round((Date.now() - started) / 1000)} s`);
