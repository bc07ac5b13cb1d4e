/**
 * The control-plane benchmark (`scripts/bench --control-plane`): the paths a cluster
 * really takes, at 1,000 / 10,000 / 50,000 leases, side by side with the kernel vxlan
 * backend (flannel's way), in rounds that interleave the configurations so drift from
 * other load hits them alike; then each backend's idle cost. Writes its section of
 * bench/RESULTS.md (the data-path section is left as it is) and prints the raw figures.
 *
 *   --sizes=1000,10000,50000   leases (up to 16,375 in the pod range with ebpf-vxlan and
 *                              vxlan; above, the alloc backend: see control-plane/leases.ts)
 *   --backends=ebpf-vxlan,vxlan
 *   --rounds=3                 rounds of everything up to 16,375 leases and of idle
 *   --big-rounds=1             rounds of the larger sizes
 *   --idle-seconds=130         length of each idle measurement (0: none)
 *   --no-kube                  skip the Node-informer paths
 *   --paths=burst-500,list,kube-list  only these paths (default: all; kube-burst needs kube-list)
 *   --binary=dist/tartan       the agent to measure
 *   --raw=FILE                 also write every measurement as JSON
 *   --no-write                 leave bench/RESULTS.md alone
 *
 * The etcd paths are in control-plane/etcd-paths.ts, the Node informer in
 * control-plane/kube-paths.ts, idle in control-plane/idle.ts; bench/CONTROL-PLANE.md
 * has the analysis.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadAverage, ROOT } from "./control-plane/agent-run.ts";
import { etcdPaths, type PathName, type PathResult } from "./control-plane/etcd-paths.ts";
import { type IdleResult, idleCost } from "./control-plane/idle.ts";
import { kubePaths } from "./control-plane/kube-paths.ts";
import { POD_RANGE_LEASES } from "./control-plane/leases.ts";
import { idleTable, pathTable, targetTable, withSection } from "./control-plane/report.ts";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,10000,50000" },
    backends: { type: "string", default: "ebpf-vxlan,vxlan" },
    rounds: { type: "string", default: "3" },
    "big-rounds": { type: "string", default: "1" },
    "idle-seconds": { type: "string", default: "130" },
    "no-kube": { type: "boolean", default: false },
    paths: { type: "string", default: "" },
    binary: { type: "string", default: join(ROOT, "dist/tartan") },
    raw: { type: "string" },
    "no-write": { type: "boolean", default: false },
    "control-plane": { type: "boolean", default: false },
  },
});

const sizes = values.sizes!.split(",").map(Number);
const backends = values.backends!.split(",");
const rounds = Number(values.rounds);
const bigRounds = Number(values["big-rounds"]);
const idleSeconds = Number(values["idle-seconds"]);
const ETCD_PATHS: PathName[] = ["burst-500", "burst-max", "resync", "list"];
const KUBE_PATHS: PathName[] = ["kube-list", "kube-burst"];
const only = values.paths ? new Set(values.paths.split(",")) : null;
const PATHS = ETCD_PATHS.filter((p) => only === null || only.has(p));
const kubeWanted = KUBE_PATHS.filter((p) => only === null || only.has(p));
const log = (s: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}`);

const results: PathResult[] = [];
const idle: IdleResult[] = [];
const loads: number[] = [];
const started = Date.now();
for (let round = 1; round <= Math.max(rounds, bigRounds); round++) {
  for (const n of sizes) {
    const big = n > POD_RANGE_LEASES - 8;
    if (round > (big ? bigRounds : rounds)) continue;
    // the datapath backends need the pod range; beyond it only the control plane (alloc)
    for (const backend of big ? ["alloc"] : backends) {
      if (PATHS.length) {
        loads.push(loadAverage());
        log(`round ${round}: etcd, ${backend}, ${n} leases (load ${loadAverage()})`);
        results.push(...(await etcdPaths({ binary: values.binary!, backend, n, paths: PATHS, log })));
      }
      if (values["no-kube"] || kubeWanted.length === 0) continue;
      loads.push(loadAverage());
      log(`round ${round}: Node informer, ${backend}, ${n} Nodes (load ${loadAverage()})`);
      results.push(...(await kubePaths({ binary: values.binary!, backend, n, paths: kubeWanted, log })));
    }
  }
  if (idleSeconds > 0 && round <= rounds)
    for (const backend of ["ebpf-vxlan", "vxlan", "host-gw"]) {
      log(`round ${round}: idle, ${backend}, ${idleSeconds} s (load ${loadAverage()})`);
      idle.push(await idleCost(values.binary!, backend, idleSeconds));
    }
}

const loadText = loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : "–";
const section = `## Control plane at scale

Measured ${new Date().toISOString()} by \`scripts/bench --control-plane ${process.argv
  .slice(2)
  .filter((a) => a !== "--control-plane")
  .join(" ")}\`
on ${cpus().length} × ${cpus()[0]?.model ?? "?"} with other work on the machine (1-minute load average when each
configuration started: ${loadText}); medians over rounds, (min–max) when they differ. One agent on etcd 3.4 (its
JSON gateway), writes from another process, \`/healthz\` asked every 10 ms from a third. "all programmed" is the
time of the agent's log line for its last apply; CPU is the agent's with the \`ip\`/\`bridge\`/\`ping\` it ran, over
the span from the first write (list: the start; resync: the resume) to that line. 50,000 leases use the alloc
backend (no flannel network of 50,000 subnets fits the test ranges: control-plane/leases.ts). The Node-informer
rows are \`tartan agent --kube-subnet-mgr\` against the stand-in API server (HTTPS, a token, realistic Nodes).

${pathTable(results)}

Idle: one agent per backend on etcd, no other node, measured over the span after its start settled (the
background doctor runs once a minute at this size).

${idleTable(idle)}

${targetTable(
  results,
  idle,
  idle.map((r) => r.rssMiB),
)}

What these figures mean and where the time and memory go: [CONTROL-PLANE.md](CONTROL-PLANE.md).`;

if (values.raw) writeFileSync(values.raw, JSON.stringify({ results, idle }, null, 1));
if (!values["no-write"]) {
  const file = join(import.meta.dir, "RESULTS.md");
  writeFileSync(file, withSection(readFileSync(file, "utf8"), section));
}
console.log(`\n${section}\n`);
log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
