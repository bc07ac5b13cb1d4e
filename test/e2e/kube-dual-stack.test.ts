/**
 * Dual stack with `tartan agent --kube-subnet-mgr` (flannel's EnableIPv6 in Kubernetes
 * mode), end to end against the STAND-IN API server (test/helpers/kube-apiserver.ts) on
 * an IPv6 ULA underlay (fd00:18::/64) with IPv6 pods (fd00:19::/56). Every Node has two
 * podCIDRs, 198.19.<i>.0/24 and fd00:19:0:<i>::/64 (one listed IPv6 first). Two Tartan
 * vxlan nodes and a flanneld-style dual-stack node made by hand (flannel.1 and
 * flannel-v6.1 programmed as flanneld would, its six annotations as flanneld writes them)
 * program each other; pods added through `tartan cni` reach each other over IPv4 and
 * IPv6. Then: the annotations as the real kubectl reads them, subnet.env's FLANNEL_IPV6_*,
 * a Node whose IPv6 podCIDR comes late, and two host-gw nodes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type FlanneldNode, type FlanneldPeer, makeFlanneldNode } from "../helpers/flanneld-node.ts";
import {
  type NamespacedKubeApi,
  startKubeApiServerInNamespace,
  writeKubeconfig,
} from "../helpers/kube-apiserver.ts";
import { flanneldDualVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";
import { Lab, type LabProcess, until } from "../helpers/netns.ts";
import { addPodViaCni, type Pod, ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, status, waitReady } from "../helpers/tartan.ts";

const API_IP = "198.18.254.2";
const TOKEN = "kube-dual-token";
const NETWORK = "198.19.0.0/16";
const NETWORK6 = "fd00:19::/56";
const P = "flannel.alpha.coreos.com";
const kubectl = Bun.which("kubectl");

interface KubeNode {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly ip6: string;
  readonly index: number;
  readonly backend: "vxlan" | "host-gw" | "flanneld";
  readonly subnetFile: string;
  readonly bpffs: string;
  agent: LabProcess | null;
  readonly pods: Pod[];
}

const v4Of = (i: number) => `198.19.${i}.0/24`;
const v6Of = (i: number) => `fd00:19:0:${i.toString(16)}::/64`;
/** A lease as `tartan status` shows it: "IPv4 subnet IPv6 subnet". */
const leaseOf = (i: number) => `${v4Of(i)} ${v6Of(i)}`;

describe.skipIf(!isRoot())("kube subnet manager, dual stack, on the stand-in API server", () => {
  const lab = new Lab("k6");
  let api: NamespacedKubeApi;
  let kubeconfig = "";
  let netConf = "";
  let flanneld: FlanneldNode;
  const nodes: KubeNode[] = [];
  const agents = () => nodes.filter((n) => n.agent !== null);

  /** A dual-stack node namespace and its Node (both podCIDRs, unless `podCIDRs` says otherwise). */
  async function addNode(backend: KubeNode["backend"], podCIDRs?: string[]): Promise<KubeNode> {
    const base = await lab.addNode({ ipv6: true });
    const name = `node-${base.index}`;
    await api.createNode(
      makeNode({ name, internalIp: base.ip, podCIDRs: podCIDRs ?? [v4Of(base.index), v6Of(base.index)] }),
    );
    const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}-n${base.index}`;
    lab.bpffsDirs.push(bpffs);
    const n: KubeNode = {
      ...base,
      ip6: base.ip6!,
      name,
      backend,
      bpffs,
      subnetFile: join(lab.dir, `n${base.index}`, "subnet.env"),
      agent: null,
      pods: [],
    };
    nodes.push(n);
    return n;
  }

  function startAgent(n: KubeNode): LabProcess {
    n.agent = lab.spawn(
      n.ns,
      `agent-${n.index}`,
      [
        requireBinary(),
        "agent",
        "--ip-masq",
        "--kube-subnet-mgr",
        `--kubeconfig-file=${kubeconfig}`,
        `--net-config-path=${netConf}`,
        `--backend=${n.backend}`,
        "--iface=eth0",
        `--subnet-file=${n.subnetFile}`,
        "--http=127.0.0.1:8471",
        `--bpffs=${n.bpffs}`,
        `--state-dir=${lab.dir}/state`,
      ],
      { NODE_NAME: n.name },
    );
    return n.agent;
  }

  /** What flanneld programs for a Tartan node, read from its Node's annotations. */
  const peerOf = async (n: KubeNode): Promise<FlanneldPeer> => {
    const a = (await api.getNode(n.name))!.metadata.annotations;
    return {
      subnet: v4Of(n.index),
      publicIp: a[`${P}/public-ip`],
      vtepMac: JSON.parse(a[`${P}/backend-data`]).VtepMAC,
      v6: {
        subnet: v6Of(n.index),
        publicIp: a[`${P}/public-ipv6`],
        vtepMac: JSON.parse(a[`${P}/backend-v6-data`]).VtepMAC,
      },
    };
  };

  const logs = async () => {
    let out = "";
    for (const p of lab.processes) out += `--- ${p.name} ---\n${(await lab.log(p)).slice(-3000)}\n`;
    return out;
  };

  /** Every running agent holds exactly `leases` (both families), all programmed. */
  const converged = (leases: string[], what: string) =>
    until(
      async () => {
        for (const n of agents()) {
          const s = await status(lab, n.ns);
          const have = s.leases.map((l) => `${l.subnet} ${l.subnet6 ?? "-"}`).sort();
          if (JSON.stringify(have) !== JSON.stringify([...leases].sort())) return false;
          if (!s.ready.ok || s.leases.some((l) => !l.programmed)) return false;
        }
        return true;
      },
      what,
      30_000,
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}\n${await logs()}`);
    });

  /** One ping gets through (a bridge just made may still be in DAD), then three of three. */
  const reach = async (from: Pod, to: string) => {
    await until(
      async () => (await ping(lab, from.ns, to, { count: 1 })).received === 1,
      `${from.ns} → ${to}`,
    );
    return (await ping(lab, from.ns, to)).received;
  };

  const macOf = async (n: KubeNode, dev: string) =>
    (JSON.parse(await lab.must(n.ns, ["ip", "-json", "link", "show", dev])) as { address: string }[])[0]!
      .address;

  beforeAll(async () => {
    api = await startKubeApiServerInNamespace(lab, { ip: API_IP, tls: true, token: TOKEN });
    kubeconfig = join(lab.dir, "kubeconfig");
    writeKubeconfig(kubeconfig, api, TOKEN);
    netConf = join(lab.dir, "net-conf.json");
    writeFileSync(
      netConf,
      JSON.stringify({
        Network: NETWORK,
        EnableIPv6: true,
        IPv6Network: NETWORK6,
        Backend: { Type: "vxlan" },
      }),
    );
    const n1 = await addNode("vxlan");
    // kube-controller-manager lists the families in --cluster-cidr's order: either may come first
    const n2 = await addNode("vxlan", [v6Of(2), v4Of(2)]);
    const n3 = await addNode("flanneld");
    for (const n of [n1, n2]) startAgent(n);
    // node-3 is a dual-stack flanneld: its six annotations, one strategic patch on nodes/NAME/status…
    await api.patchNode(
      n3.name,
      { metadata: { annotations: flanneldDualVxlanAnnotations(n3.ip, macFor(3), n3.ip6, macFor(0x103)) } },
      "strategic",
      "status",
    );
    flanneld = await makeFlanneldNode(lab, n3, {
      subnet: v4Of(3),
      vtepMac: macFor(3),
      network: NETWORK,
      subnetFile: n3.subnetFile,
      v6: { ip: n3.ip6, subnet: v6Of(3), vtepMac: macFor(0x103), network: NETWORK6 },
    });
    for (const n of [n1, n2]) await waitReady(lab, n.ns, n.agent!, 8471, 60_000);
    // …and programs both families of every lease it sees in the Nodes' annotations
    for (const n of [n1, n2]) await flanneld.addPeer(await peerOf(n));
    await converged([leaseOf(1), leaseOf(2), leaseOf(3)], "both agents to program 3 dual-stack leases");
    for (const n of [n1, n2, n3])
      n.pods.push(await addPodViaCni(lab, n, n.subnetFile, { binary: requireBinary() }));
  }, 180_000);

  afterAll(async () => {
    for (const p of lab.processes) await lab.stop(p, "SIGKILL");
    await api?.close();
    await lab.cleanup();
  });

  test("pods added through `tartan cni` reach each other over IPv4 and IPv6 across every pair of nodes", async () => {
    const three = nodes.slice(0, 3);
    for (const a of three) {
      const pod = a.pods[0]!;
      expect(pod.ip6?.startsWith(`fd00:19:0:${a.index}:`)).toBe(true);
      for (const b of three) {
        if (a === b) continue;
        const to = b.pods[0]!;
        const got = { v4: await reach(pod, to.ip), v6: await reach(pod, to.ip6!) };
        expect({ from: a.name, to: b.name, ...got }).toEqual({ from: a.name, to: b.name, v4: 3, v6: 3 });
      }
    }
  }, 120_000);

  test("subnet.env has FLANNEL_IPV6_* as flanneld writes it; the leases carry both families", async () => {
    for (const n of nodes.slice(0, 2)) {
      expect(readFileSync(n.subnetFile, "utf8")).toBe(
        `FLANNEL_NETWORK=${NETWORK}\n` +
          `FLANNEL_SUBNET=198.19.${n.index}.1/24\n` +
          `FLANNEL_IPV6_NETWORK=${NETWORK6}\n` +
          `FLANNEL_IPV6_SUBNET=fd00:19:0:${n.index}::1/64\n` +
          "FLANNEL_MTU=1430\n" +
          "FLANNEL_IPMASQ=true\n",
      );
      const s = await status(lab, n.ns);
      expect([s.lease?.subnet6, s.lease?.publicIpv6]).toEqual([v6Of(n.index), n.ip6]);
      const fl = s.leases.find((l) => l.subnet === v4Of(3))!;
      expect([fl.subnet6, fl.publicIpv6]).toEqual([v6Of(3), nodes[2]!.ip6]);
    }
  });

  test.skipIf(!kubectl)(
    "the real kubectl reads flanneld's six annotations, byte for byte, on every Tartan Node",
    async () => {
      for (const n of nodes.slice(0, 2)) {
        const out = await lab.must(n.ns, [
          kubectl!,
          `--kubeconfig=${kubeconfig}`,
          `--cache-dir=${join(lab.dir, "kcache")}`,
          "get",
          "node",
          n.name,
          "-o",
          "json",
        ]);
        const node = JSON.parse(out) as { metadata: { annotations: Record<string, string> } };
        const [mac, mac6] = [await macOf(n, "flannel.1"), await macOf(n, "flannel-v6.1")];
        expect(node.metadata.annotations).toEqual(flanneldDualVxlanAnnotations(n.ip, mac, n.ip6, mac6));
        expect(node.metadata.annotations[`${P}/backend-v6-data`]).toBe(`{"VNI":1,"VtepMAC":"${mac6}"}`);
        expect(node.metadata.annotations[`${P}/public-ipv6`]).toBe(n.ip6);
      }
    },
  );

  test("doctor on a dual-stack kube node: the kube checks (IPv6 podCIDR, six annotations) and the ipv6 checks pass", async () => {
    type Report = { checks: { id: string; status: string; finding: string }[] };
    for (const n of nodes.slice(0, 2)) {
      const r = await lab.exec(n.ns, [requireBinary(), "doctor", "--json", "--no-probe"]);
      const report = JSON.parse(r.stdout) as Report;
      const picked = report.checks.filter((c) => c.id.startsWith("kube-") || c.id.startsWith("ipv6-"));
      expect(picked.map((c) => [c.id, c.status])).toEqual([
        ["kube-podcidr", "ok"],
        ["kube-annotations", "ok"],
        ["kube-network-unavailable", "ok"],
        ["ipv6-forward", "ok"],
        ["ipv6-datapath", "ok"],
        ["ipv6-routes", "ok"],
        ["ipv6-masquerade", "ok"],
      ]);
      expect(picked[0]!.finding).toBe(
        `Node ${n.name} has podCIDRs ${v4Of(n.index)} and ${v6Of(n.index)}, inside ${NETWORK} and ${NETWORK6}`,
      );
      // the IPv6 annotations are judged too: a stale public-ipv6 is a problem
      await api.patchNode(
        n.name,
        { metadata: { annotations: { [`${P}/public-ipv6`]: "fd00:18::ff" } } },
        "strategic",
        "status",
      );
      const stale = (
        JSON.parse(
          (await lab.exec(n.ns, [requireBinary(), "doctor", "--json", "--no-probe"])).stdout,
        ) as Report
      ).checks.find((c) => c.id === "kube-annotations")!;
      expect([stale.status, stale.finding]).toEqual([
        "problem",
        `Node ${n.name}: ${P}/public-ipv6 is fd00:18::ff, this node announces ${n.ip6}`,
      ]);
      await api.patchNode(
        n.name,
        { metadata: { annotations: { [`${P}/public-ipv6`]: n.ip6 } } },
        "strategic",
        "status",
      );
    }
  }, 60_000);

  test("a Node whose IPv6 podCIDR comes late: /readyz 503 naming it, said once; then up in both families", async () => {
    const n4 = await addNode("vxlan", [v4Of(4)]);
    const agent = startAgent(n4);
    const ready = await until(
      async () => {
        const r = await lab.http(n4.ns, "/readyz");
        return r.status === 503 && r.body.includes("no IPv6 podCIDR") ? JSON.parse(r.body) : false;
      },
      "the new node's /readyz to name the missing IPv6 podCIDR",
      30_000,
    );
    expect(ready.reasons[0]).toBe(
      `Node ${n4.name} has podCIDR ${v4Of(4)} but no IPv6 podCIDR yet, and ${netConf} enables IPv6; waiting for kube-controller-manager to assign one (it does only when started with --allocate-node-cidrs=true --cluster-cidr=${NETWORK},${NETWORK6}; kubeadm: init --pod-network-cidr=${NETWORK},${NETWORK6})`,
    );
    await until(
      async () =>
        (await api.requests()).filter((q) => q.method === "GET" && q.path === `/api/v1/nodes/${n4.name}`)
          .length >= 3,
      "the agent to ask for its Node again",
      30_000,
    );
    expect((await lab.log(agent)).split("\n").filter((l) => l.includes("no IPv6 podCIDR yet"))).toHaveLength(
      1,
    );
    await api.setPodCidr(n4.name, [v4Of(4), v6Of(4)]);
    await waitReady(lab, n4.ns, agent, 8471, 30_000);
    await flanneld.addPeer(await peerOf(n4));
    await converged(
      [leaseOf(1), leaseOf(2), leaseOf(3), leaseOf(4)],
      "every agent to program node-4 dual-stack",
    );
    const pod4 = await addPodViaCni(lab, n4, n4.subnetFile, { binary: requireBinary() });
    for (const n of nodes.slice(0, 3)) expect(await reach(n.pods[0]!, pod4.ip6!)).toBe(3);
    await lab.stop(agent);
    n4.agent = null;
    const peer4 = await peerOf(n4);
    await api.deleteNode(n4.name);
    await flanneld.removePeer(peer4);
    await converged([leaseOf(1), leaseOf(2), leaseOf(3)], "every agent to forget node-4");
    // unprogrammed once the removal grace (docs/reliability.md) is over, in both families
    for (const n of nodes.slice(0, 2))
      await until(
        async () =>
          (await lab.must(n.ns, ["ip", "-6", "route", "show", v6Of(4)])).trim() === "" &&
          (await lab.must(n.ns, ["ip", "route", "show", v4Of(4)])).trim() === "" &&
          !(await lab.must(n.ns, ["bridge", "fdb", "show", "dev", "flannel-v6.1"])).includes(n4.ip6),
        `${n.name} to remove node-4's routes and IPv6 FDB entry`,
      );
  }, 120_000);

  test("host-gw nodes: backend-v6-data null and public-ipv6 published; pods reach each other over both families", async () => {
    const h1 = await addNode("host-gw");
    const h2 = await addNode("host-gw");
    for (const h of [h1, h2]) startAgent(h);
    for (const h of [h1, h2]) await waitReady(lab, h.ns, h.agent!, 8471, 60_000);
    for (const h of [h1, h2])
      expect((await api.getNode(h.name))!.metadata.annotations).toEqual({
        [`${P}/backend-data`]: "null",
        [`${P}/backend-type`]: "host-gw",
        [`${P}/backend-v6-data`]: "null",
        [`${P}/kube-subnet-manager`]: "true",
        [`${P}/public-ip`]: h.ip,
        [`${P}/public-ipv6`]: h.ip6,
      });
    await until(
      async () =>
        (await lab.must(h1.ns, ["ip", "-6", "route", "show", v6Of(h2.index)])).includes(`via ${h2.ip6}`),
      "h1 to route h2's IPv6 podCIDR via h2",
    );
    const p1 = await addPodViaCni(lab, h1, h1.subnetFile, { binary: requireBinary() });
    const p2 = await addPodViaCni(lab, h2, h2.subnetFile, { binary: requireBinary() });
    for (const [a, b] of [
      [p1, p2],
      [p2, p1],
    ] as const) {
      expect(await reach(a, b.ip)).toBe(3);
      expect(await reach(a, b.ip6!)).toBe(3);
    }
    for (const h of [h1, h2]) {
      await lab.stop(h.agent!);
      h.agent = null;
      await api.deleteNode(h.name);
    }
  }, 120_000);
});
