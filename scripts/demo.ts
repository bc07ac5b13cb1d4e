/**
 * The demo driver (run by scripts/demo): a 3-node Tartan cluster in network namespaces
 * on the embedded registry, one pod per node, pings across nodes, the endpoints and the
 * datapath counters — then everything is removed, also on Ctrl-C or failure.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { attachments } from "../test/helpers/bpf-attachments.ts";
import { Lab } from "../test/helpers/netns.ts";
import { addPodViaCni, ping } from "../test/helpers/pods.ts";
import { TARTAN, startAgent, waitReady } from "../test/helpers/tartan.ts";
import { stepLine, useColour } from "./demo-style.ts";

const BACKENDS = ["ebpf-vxlan", "vxlan", "host-gw", "alloc"];
const { values } = parseArgs({
  options: { backend: { type: "string", default: "ebpf-vxlan" }, keep: { type: "boolean", default: false }, help: { type: "boolean" } },
});
if (values.help) {
  console.log("Usage: scripts/demo [--backend=ebpf-vxlan|vxlan|host-gw|alloc] [--keep]");
  process.exit(0);
}
const backend = values.backend!;
if (!BACKENDS.includes(backend)) {
  console.error(`scripts/demo: --backend=${backend}: must be one of ${BACKENDS.join(", ")}`);
  process.exit(2);
}

const colour = useColour(process.stdout.isTTY, process.env);
const step = (s: string) => console.log(stepLine(s, colour));
const show = (s: string) => console.log(s.trimEnd().replace(/^/gm, "   "));

const lab = new Lab("demo");
let failed = false;
const onSignal = async () => {
  console.log("\ninterrupted: cleaning up");
  await lab.cleanup();
  process.exit(130);
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

try {
  const registry = `sqlite:${join(lab.dir, "registry.db")}`;
  step(`network config → ${registry}`);
  const netConf = { Network: "198.19.0.0/16", Backend: { Type: backend === "ebpf-vxlan" ? "vxlan" : backend } };
  writeFileSync(join(lab.dir, "net-conf.json"), JSON.stringify(netConf));
  show(JSON.stringify(netConf));
  show(await lab.must(lab.namespaces[0] ?? (await lab.underlay()), [TARTAN, "config", "set", join(lab.dir, "net-conf.json"), `--registry=${registry}`]));

  step(`3 nodes (network namespaces on one underlay bridge, 198.18.0.0/16), tartan agent --backend=${backend}`);
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const node = await lab.addNode();
    const subnetFile = join(lab.dir, `node${i + 1}`, "subnet.env");
    const bpffs = `/sys/fs/bpf/tartan-demo-${lab.prefix}-node${i + 1}`;
    lab.bpffsDirs.push(bpffs);
    const agent = startAgent(lab, { node, name: `node${i + 1}`, registry, backend, subnetFile, extra: [`--bpffs=${bpffs}`] });
    nodes.push({ node, subnetFile, agent, bpffs });
    show(`node${i + 1}: namespace ${node.ns}, eth0 ${node.ip}`);
  }
  for (const n of nodes) await waitReady(lab, n.node.ns, n.agent, 8471, 30_000);

  step("leases in the registry (tartan leases)");
  show(await lab.must(nodes[0]!.node.ns, [TARTAN, "leases", `--registry=${registry}`]));

  step("node1's subnet.env (flannel's format)");
  show(await Bun.file(nodes[0]!.subnetFile).text());

  step("node1's health endpoint: GET /healthz and /readyz");
  show(`/healthz → ${JSON.stringify(await lab.http(nodes[0]!.node.ns, "/healthz"))}`);
  show(`/readyz  → ${JSON.stringify(await lab.http(nodes[0]!.node.ns, "/readyz"))}`);

  if (backend !== "alloc") {
    step("one pod per node, added as a container runtime does: tartan cni → bridge + host-local from subnet.env");
    const pods = [];
    for (const [i, n] of nodes.entries()) {
      const pod = await addPodViaCni(lab, n.node, n.subnetFile, { binary: TARTAN, name: `pod${i + 1}` });
      pods.push(pod);
      show(`pod on node${i + 1}: ${pod.ip}`);
    }
    step("pods ping each other across nodes");
    for (const [i, a] of pods.entries())
      for (const [j, b] of pods.entries()) {
        if (i === j) continue;
        const r = await ping(lab, a.ns, b.ip, { count: 3 });
        show(`pod@node${i + 1} → pod@node${j + 1} (${b.ip}): ${r.received}/${r.sent} replies`);
        if (r.received === 0) failed = true;
      }
    if (backend === "ebpf-vxlan") {
      // tcx attachments: bpftool before 7.3 (Debian 12 ships 7.1) does not list them
      step("eBPF programs attached on node1 (device, hook, program)");
      show((await attachments(lab, nodes[0]!.node.ns)).join("\n"));
    }
  }

  step("node1's status (tartan status)");
  show(await lab.must(nodes[0]!.node.ns, [TARTAN, "status"]));

  if (values.keep) {
    console.log(`\nThe cluster is up: try  nsenter --net=/run/netns/${nodes[0]!.node.ns} ${TARTAN} status`);
    console.log("Press Enter to tear it down.");
    for await (const _ of console) break;
  }
} catch (e) {
  failed = true;
  console.error(`\ndemo failed: ${(e as Error).message}`);
} finally {
  step("cleaning up: agents stopped, namespaces and pins removed");
  await lab.cleanup();
}
process.exit(failed ? 1 : 0);
