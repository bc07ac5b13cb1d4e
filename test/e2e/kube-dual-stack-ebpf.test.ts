/**
 * Dual stack with `tartan agent --kube-subnet-mgr` on ebpf-vxlan: the two halves of issue 18
 * together (the Kubernetes lease source's IPv6 podCIDRs and annotations, the eBPF programs'
 * IPv6 path). Against the STAND-IN API server (test/helpers/kube-apiserver.ts), an
 * ebpf-vxlan node and a kernel vxlan node, both dual stack, on an IPv6 ULA underlay
 * (fd00:18::/64) with IPv6 pods (fd00:19::/56): the ebpf-vxlan node publishes flannel's six
 * annotations with the VTEP MACs its lease announces, pods added through `tartan cni` reach
 * each other over both families in both directions, and the IPv6 packets are
 * encapsulated and decapsulated by the programs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startKubeApiServerInNamespace, writeKubeconfig } from "../helpers/kube-apiserver.ts";
import { flanneldDualVxlanAnnotations, makeNode } from "../helpers/kube-nodes.ts";
import { Lab, type LabProcess, until } from "../helpers/netns.ts";
import { addPodViaCni, type Pod, ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, status, waitReady } from "../helpers/tartan.ts";

const API_IP = "198.18.254.3";
const TOKEN = "kube-dual-ebpf-token";
const NETWORK = "198.19.0.0/16";
const NETWORK6 = "fd00:19::/56";
const P = "flannel.alpha.coreos.com";

const v4Of = (i: number) => `198.19.${i}.0/24`;
const v6Of = (i: number) => `fd00:19:0:${i.toString(16)}::/64`;

type LabNode = Awaited<ReturnType<Lab["addNode"]>>;

describe.skipIf(!isRoot())("kube subnet manager, dual stack, on ebpf-vxlan", () => {
  const lab = new Lab("k6e");
  let api: Awaited<ReturnType<typeof startKubeApiServerInNamespace>>;
  const nodes: Array<{ base: LabNode; name: string; backend: string; agent: LabProcess; pod: Pod | null }> =
    [];

  beforeAll(async () => {
    api = await startKubeApiServerInNamespace(lab, { ip: API_IP, tls: true, token: TOKEN });
    const kubeconfig = join(lab.dir, "kubeconfig");
    writeKubeconfig(kubeconfig, api, TOKEN);
    const netConf = join(lab.dir, "net-conf.json");
    writeFileSync(
      netConf,
      JSON.stringify({
        Network: NETWORK,
        EnableIPv6: true,
        IPv6Network: NETWORK6,
        Backend: { Type: "vxlan" },
      }),
    );
    for (const backend of ["ebpf-vxlan", "vxlan"]) {
      const base = await lab.addNode({ ipv6: true });
      const name = `node-${base.index}`;
      await api.createNode(
        makeNode({ name, internalIp: base.ip, podCIDRs: [v4Of(base.index), v6Of(base.index)] }),
      );
      const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}-n${base.index}`;
      lab.bpffsDirs.push(bpffs);
      const agent = lab.spawn(
        base.ns,
        `agent-${base.index}`,
        [
          requireBinary(),
          "agent",
          "--kube-subnet-mgr",
          `--kubeconfig-file=${kubeconfig}`,
          `--net-config-path=${netConf}`,
          `--backend=${backend}`,
          "--iface=eth0",
          `--subnet-file=${join(lab.dir, `n${base.index}`, "subnet.env")}`,
          "--http=127.0.0.1:8471",
          `--bpffs=${bpffs}`,
          `--state-dir=${lab.dir}/state`,
        ],
        { NODE_NAME: name },
      );
      nodes.push({ base, name, backend, agent, pod: null });
    }
    for (const n of nodes) await waitReady(lab, n.base.ns, n.agent, 8471, 60_000);
    await until(
      async () => {
        for (const n of nodes) {
          const s = await status(lab, n.base.ns);
          if (s.leases.length !== 2 || s.leases.some((l) => !l.programmed || !l.subnet6)) return false;
        }
        return true;
      },
      "both agents to program both dual-stack leases",
      30_000,
    );
    for (const n of nodes)
      n.pod = await addPodViaCni(lab, n.base, join(lab.dir, `n${n.base.index}`, "subnet.env"), {
        binary: requireBinary(),
      });
  }, 180_000);

  afterAll(async () => {
    for (const p of lab.processes) await lab.stop(p, "SIGKILL");
    await api?.close();
    await lab.cleanup();
  });

  test("the ebpf-vxlan node publishes flanneld's six annotations with the VTEP MAC of its lease", async () => {
    const e = nodes[0]!;
    const s = await status(lab, e.base.ns);
    const own = s.lease!;
    const mac = s.leases.find((l) => l.own)!.vtepMac!;
    const annotations = (await api.getNode(e.name))!.metadata.annotations;
    const picked = Object.fromEntries(Object.entries(annotations).filter(([k]) => k.startsWith(`${P}/`)));
    // one VTEP for both families: BackendV6Data announces the IPv4 VTEP MAC (README, dual stack)
    expect(picked).toEqual(flanneldDualVxlanAnnotations(e.base.ip, mac, e.base.ip6!, mac));
    // the kernel vxlan node took both from the annotations: its flannel-v6.1 sends to that VTEP
    const fdb6 = await lab.must(nodes[1]!.base.ns, ["bridge", "fdb", "show", "dev", "flannel-v6.1"]);
    expect(fdb6).toContain(`${mac} dst ${e.base.ip6} self permanent`);
    expect([own.subnet, own.subnet6]).toEqual([v4Of(e.base.index), v6Of(e.base.index)]);
  });

  test("pods reach each other over IPv4 and IPv6, both ways; the programs carry the IPv6 packets", async () => {
    const reach = async (from: Pod, to: string) => {
      await until(
        async () => (await ping(lab, from.ns, to, { count: 1 })).received === 1,
        `${from.ns} → ${to}`,
      );
      return (await ping(lab, from.ns, to)).received;
    };
    const [e, k] = [nodes[0]!.pod!, nodes[1]!.pod!];
    expect({
      v4: await reach(e, k.ip),
      v6: await reach(e, k.ip6!),
      v4back: await reach(k, e.ip),
      v6back: await reach(k, e.ip6!),
    }).toEqual({ v4: 3, v6: 3, v4back: 3, v6back: 3 });
    const c = (await status(lab, nodes[0]!.base.ns)).counters;
    expect(c.pod6_encap_ok! + c.pod6_encap_ok_neigh! + c.encap6_ok! + c.encap6_ok_neigh!).toBeGreaterThan(0);
    expect(c.decap6_stack! + c.decap6_redirect_peer!).toBeGreaterThan(0);
    expect([c.subnets6, c.members6]).toEqual([1, 1]);
  }, 60_000);
});
