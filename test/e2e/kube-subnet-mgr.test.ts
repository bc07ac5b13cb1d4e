/**
 * `tartan agent --kube-subnet-mgr` end to end, against the STAND-IN API server
 * (test/helpers/kube-apiserver.ts: no kube-apiserver can be installed here) in its own
 * namespace on the underlay, over HTTPS with a token from a kubeconfig. Three node
 * namespaces: an ebpf-vxlan agent, a vxlan agent, and a flanneld-style node made by hand
 * (flannel.1 and its per-peer entries programmed as flanneld does, its annotations written
 * as flanneld writes them). Pods are added through `tartan cni`. Then: subnet.env and the
 * annotations byte for byte, a Node added and deleted through the API, a 10 s API outage
 * under a 100/s ping, a Node without a podCIDR, Nodes with bad annotations, and doctor.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr, formatIp4 } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { REMOVAL_GRACE_MS } from "../../src/lease/removal-grace.ts";
import { type FlanneldNode, type FlanneldPeer, makeFlanneldNode } from "../helpers/flanneld-node.ts";
import {
  type NamespacedKubeApi,
  startKubeApiServerInNamespace,
  writeKubeconfig,
} from "../helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";
import { Lab, type LabProcess, until } from "../helpers/netns.ts";
import { addPodViaCni, type Pod, ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, status, waitReady } from "../helpers/tartan.ts";
import { summary, TrafficMonitor } from "../helpers/traffic-monitor.ts";

const API_IP = "198.18.254.2";
const TOKEN = "kube-e2e-token";
const NETWORK = "198.19.0.0/16";
const P = "flannel.alpha.coreos.com";
const OUTAGE_MS = 10_000;

interface KubeNode {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly index: number;
  readonly backend: "ebpf-vxlan" | "vxlan" | "host-gw" | "flanneld";
  readonly subnetFile: string;
  readonly bpffs: string;
  agent: LabProcess | null;
  readonly pods: Pod[];
}

describe.skipIf(!isRoot())("kube subnet manager on the stand-in API server", () => {
  const lab = new Lab("kb");
  let api: NamespacedKubeApi;
  let kubeconfig = "";
  let netConf = "";
  let flanneld: FlanneldNode;
  const nodes: KubeNode[] = [];
  const agents = () => nodes.filter((n) => n.agent !== null);
  const peerOf = async (name: string, subnet: string): Promise<FlanneldPeer> => {
    const a = (await api.getNode(name))!.metadata.annotations;
    return { subnet, publicIp: a[`${P}/public-ip`], vtepMac: JSON.parse(a[`${P}/backend-data`]).VtepMAC };
  };

  /** A node namespace and its Node object (podCIDR 198.19.<index>.0/24 unless `podCIDR` says otherwise). */
  async function addNode(
    backend: KubeNode["backend"],
    o: { podCIDR?: string | null } = {},
  ): Promise<KubeNode> {
    const base = await lab.addNode();
    const name = `node-${base.index}`;
    const podCIDR = o.podCIDR === undefined ? `198.19.${base.index}.0/24` : o.podCIDR;
    await api.createNode(makeNode({ name, internalIp: base.ip, ...(podCIDR ? { podCIDR } : {}) }));
    const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}-n${base.index}`;
    lab.bpffsDirs.push(bpffs);
    const n: KubeNode = {
      ...base,
      name,
      backend,
      subnetFile: join(lab.dir, `n${base.index}`, "subnet.env"),
      bpffs,
      agent: null,
      pods: [],
    };
    nodes.push(n);
    return n;
  }

  /**
   * The agent as the DaemonSet runs it, with a kubeconfig instead of the service account;
   * our Node from NODE_NAME unless `env` says otherwise (POD_NAME and POD_NAMESPACE).
   */
  function startAgent(n: KubeNode, env: Record<string, string> = { NODE_NAME: n.name }): LabProcess {
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
      env,
    );
    return n.agent;
  }

  const addPod = async (n: KubeNode) => {
    const pod = await addPodViaCni(lab, n, n.subnetFile, { binary: requireBinary() });
    n.pods.push(pod);
    return pod;
  };

  /**
   * A deleted Node's subnet is gone from the datapaths: the vxlan node's route (node 2)
   * and the ebpf-vxlan node's subnet map (node 1). Agents forget the lease at once, the
   * datapath when the removal grace (REMOVAL_GRACE_MS) ends.
   */
  const unprogrammed = (subnet: string, what: string) =>
    until(async () => {
      const { readSubnetMap } = await import("../../src/backend/ebpf-vxlan/inspect.ts");
      const map = readSubnetMap(nodes[0]!.bpffs)!.map(([k]) => `${formatIp4(k.addr)}/${k.prefixLen}`);
      const route = (await lab.must(nodes[1]!.ns, ["ip", "route", "show", subnet])).trim();
      return route === "" && !map.includes(subnet);
    }, `${what} once the removal grace (${REMOVAL_GRACE_MS} ms) is over`);

  /** Every running agent sees exactly `subnets` as leases, all programmed (where its backend can). */
  const converged = (subnets: string[], what: string) =>
    until(
      async () => {
        for (const n of agents()) {
          const s = await status(lab, n.ns);
          const have = s.leases.map((l) => l.subnet).sort();
          if (JSON.stringify(have) !== JSON.stringify([...subnets].sort())) return false;
          if (!s.ready.ok || s.leases.some((l) => !l.programmed)) return false;
        }
        return true;
      },
      what,
      30_000,
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}\n${await logs()}`);
    });

  const logs = async () => {
    let out = "";
    for (const p of lab.processes) out += `--- ${p.name} ---\n${(await lab.log(p)).slice(-3000)}\n`;
    return out;
  };
  const metric = async (n: KubeNode, line: string) => {
    const m = (await lab.http(n.ns, "/metrics")).body.split("\n").find((l) => l.startsWith(`${line} `));
    return m === undefined ? null : Number(m.slice(line.length + 1));
  };

  beforeAll(async () => {
    api = await startKubeApiServerInNamespace(lab, { ip: API_IP, tls: true, token: TOKEN });
    kubeconfig = join(lab.dir, "kubeconfig");
    writeKubeconfig(kubeconfig, api, TOKEN);
    netConf = join(lab.dir, "net-conf.json");
    writeFileSync(netConf, JSON.stringify({ Network: NETWORK, Backend: { Type: "vxlan" } }));
    const n1 = await addNode("ebpf-vxlan");
    const n2 = await addNode("vxlan");
    const n3 = await addNode("flanneld");
    for (const n of [n1, n2]) startAgent(n);
    // node-3 is flanneld: it publishes itself as flanneld does (one strategic patch on nodes/NAME/status)…
    await api.patchNode(
      n3.name,
      { metadata: { annotations: flanneldVxlanAnnotations(n3.ip, macFor(3)) } },
      "strategic",
      "status",
    );
    flanneld = await makeFlanneldNode(lab, n3, {
      subnet: "198.19.3.0/24",
      vtepMac: macFor(3),
      network: NETWORK,
      subnetFile: n3.subnetFile,
    });
    for (const n of [n1, n2]) await waitReady(lab, n.ns, n.agent!, 8471, 60_000);
    // …and programs every lease it sees in the Nodes' annotations
    for (const n of [n1, n2]) await flanneld.addPeer(await peerOf(n.name, `198.19.${n.index}.0/24`));
    await converged(["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"], "both agents to program 3 leases");
    for (const n of [n1, n2, n3]) await addPod(n);
  }, 180_000);

  afterAll(async () => {
    for (const p of lab.processes) await lab.stop(p, "SIGKILL");
    await api?.close();
    await lab.cleanup();
  });

  test("pods added through `tartan cni` reach each other across every pair of nodes", async () => {
    const three = nodes.slice(0, 3);
    for (const a of three)
      for (const b of three) {
        if (a === b) continue;
        const r = await ping(lab, a.pods[0]!.ns, b.pods[0]!.ip);
        expect({ from: a.name, to: b.name, received: r.received }).toEqual({
          from: a.name,
          to: b.name,
          received: 3,
        });
      }
  });

  test("subnet.env follows each podCIDR; the annotations are flannel's byte for byte; NetworkUnavailable=False", async () => {
    for (const n of nodes.slice(0, 2)) {
      const env = parseSubnetEnv(readFileSync(n.subnetFile, "utf8"));
      expect(formatCidr(env.subnet)).toBe(`198.19.${n.index}.0/24`);
      expect(formatCidr(env.network)).toBe(NETWORK);
      const dev = n.backend === "vxlan" ? "flannel.1" : "tartan.1";
      const mac = JSON.parse(await lab.must(n.ns, ["ip", "-json", "link", "show", dev]))[0].address as string;
      const node = (await api.getNode(n.name))!;
      // exactly the four annotations a flanneld vxlan node writes, in flanneld's bytes
      expect(node.metadata.annotations).toEqual(flanneldVxlanAnnotations(n.ip, mac));
      expect(node.metadata.annotations[`${P}/backend-data`]).toBe(`{"VNI":1,"VtepMAC":"${mac}"}`);
      const cond = node.status.conditions.find((c: { type: string }) => c.type === "NetworkUnavailable");
      expect(cond).toMatchObject({
        status: "False",
        reason: "FlannelIsUp",
        message: "Flannel is running on this node",
      });
    }
  });

  test("`tartan status` and doctor work in this mode; doctor's kube checks pass", async () => {
    const n1 = nodes[0]!;
    const st = await lab.exec(n1.ns, [requireBinary(), "status"]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain("198.19.3.0/24");
    type Report = { checks: { id: string; status: string; finding: string }[] };
    const doctor = async (n: KubeNode) =>
      JSON.parse(
        (await lab.exec(n.ns, [requireBinary(), "doctor", "--json", "--no-probe"])).stdout,
      ) as Report;
    const kubeChecks = (r: Report) =>
      r.checks.filter((c) => c.id.startsWith("kube-") || c.id === "registry").map((c) => [c.id, c.status]);
    const allOk = [
      ["registry", "ok"],
      ["kube-podcidr", "ok"],
      ["kube-annotations", "ok"],
      ["kube-network-unavailable", "ok"],
    ];
    for (const n of nodes.slice(0, 2)) {
      expect(kubeChecks(await doctor(n))).toEqual(allOk);
      // the agent's own doctor (GET /v1/doctor) judges from its running Node watch
      expect(kubeChecks(JSON.parse((await lab.http(n.ns, "/v1/doctor")).body))).toEqual(allOk);
    }
    // something else sets the condition True (a cloud route controller): doctor says so
    const cond = (status: string, reason: string) => ({
      status: { conditions: [{ type: "NetworkUnavailable", status, reason, message: reason }] },
    });
    await api.patchNode(n1.name, cond("True", "NoRouteCreated"), "strategic", "status");
    const bad = (await doctor(n1)).checks.find((c) => c.id === "kube-network-unavailable")!;
    expect(bad.status).toBe("problem");
    expect(bad.finding).toContain("NetworkUnavailable is True (NoRouteCreated");
    await api.patchNode(n1.name, cond("False", "FlannelIsUp"), "strategic", "status");
  }, 60_000);

  test("a Node added through the API becomes reachable; deleted, it is unprogrammed everywhere", async () => {
    const n4 = await addNode("vxlan");
    // this one finds its Node as flanneld does without NODE_NAME: through its pod's spec.nodeName
    await api.createPod("kube-flannel", "tartan-n4", n4.name);
    startAgent(n4, { POD_NAME: "tartan-n4", POD_NAMESPACE: "kube-flannel" });
    await waitReady(lab, n4.ns, n4.agent!, 8471, 60_000);
    await flanneld.addPeer(await peerOf(n4.name, "198.19.4.0/24"));
    const all = ["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24", "198.19.4.0/24"];
    await converged(all, "every agent to program node-4");
    const pod4 = await addPod(n4);
    for (const n of nodes.slice(0, 3)) expect((await ping(lab, n.pods[0]!.ns, pod4.ip)).received).toBe(3);

    // the agent goes first (a drained node), then its Node object
    await lab.stop(n4.agent!);
    n4.agent = null;
    const peer4 = await peerOf(n4.name, "198.19.4.0/24");
    await api.deleteNode(n4.name);
    await flanneld.removePeer(peer4); // what flanneld does on the delete event
    await converged(all.slice(0, 3), "every agent to forget node-4");
    await unprogrammed("198.19.4.0/24", "node-4's subnet to be unprogrammed");
    const n1 = nodes[0]!;
    const n2 = nodes[1]!;
    expect(await lab.must(n2.ns, ["bridge", "fdb", "show", "dev", "flannel.1"])).not.toContain(n4.ip);
    const { readSubnetMap } = await import("../../src/backend/ebpf-vxlan/inspect.ts");
    const entries = readSubnetMap(n1.bpffs)!.map(([k]) => `${formatIp4(k.addr)}/${k.prefixLen}`);
    expect(entries.sort()).toEqual(["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"]);
    expect((await ping(lab, n1.pods[0]!.ns, pod4.ip, { count: 2 })).received).toBe(0);
  }, 120_000);

  test("a 10 s API outage under a 100/s ping: 0 packets lost, /healthz 200 saying degraded", async () => {
    const three = nodes.slice(0, 3);
    const mon = await TrafficMonitor.start(lab, three);
    const t0 = Date.now();
    await api.pause();
    const seen: number[] = [];
    const states = new Set<string>();
    try {
      await until(
        async () => {
          for (const n of agents()) {
            const h = await lab.http(n.ns, "/healthz");
            seen.push(h.status);
            if (JSON.parse(h.body).registry !== "degraded") return false;
          }
          return true;
        },
        "both agents to report the API degraded",
        OUTAGE_MS,
      );
      // the outage lasts its full length; /healthz is asked all along
      while (Date.now() - t0 < OUTAGE_MS) {
        for (const n of agents()) {
          const h = await lab.http(n.ns, "/healthz");
          seen.push(h.status);
          states.add(JSON.parse(h.body).registry);
        }
        await Bun.sleep(500);
      }
    } finally {
      await api.resume();
    }
    await until(
      async () => {
        for (const n of agents()) if ((await status(lab, n.ns)).registry.state !== "ok") return false;
        return true;
      },
      "both agents to see the API again",
      30_000,
    );
    const r = await mon.stop();
    console.log(`API outage ${OUTAGE_MS} ms: ${summary(r)}`);
    expect(seen.every((s) => s === 200)).toBe(true);
    expect([...states]).toEqual(["degraded"]);
    expect(r.lost).toBe(0);
    expect(r.tcpIntact).toBe(true);
    // the watch resumed: a change made after the outage still arrives
    await api.annotateNodes(["node-3"], { "example.com/after-outage": "yes" });
    await converged(
      ["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"],
      "the agents in sync after the outage",
    );
  }, 120_000);

  test("410 Gone (the API's history compacted): a re-list, nothing unprogrammed meanwhile, changes after it arrive", async () => {
    const three = nodes.slice(0, 3);
    const mon = await TrafficMonitor.start(lab, three, { tcpRate: 0 });
    const gone = "Node watch history is gone (410); listing again";
    const before = await Promise.all(agents().map(async (n) => (await lab.log(n.agent!)).split(gone).length));
    await api.compact();
    for (const [i, n] of agents().entries())
      await until(
        async () => (await lab.log(n.agent!)).split(gone).length > before[i]!,
        `${n.name} to list again after the 410`,
        30_000,
      );
    await api.createNode(
      makeNode({
        name: "late",
        podCIDR: "198.19.20.0/24",
        annotations: flanneldVxlanAnnotations("198.18.0.20", macFor(20)),
      }),
    );
    const base = ["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"];
    await converged([...base, "198.19.20.0/24"], "every agent to see the Node made after the re-list");
    await api.deleteNode("late");
    await converged(base, "every agent to forget it again");
    const r = await mon.stop();
    console.log(`410 re-list: ${summary(r)}`);
    expect(r.lost).toBe(0);
  }, 120_000);

  test("a Node without a podCIDR: /readyz 503 naming it, one log line naming --allocate-node-cidrs, then up once assigned", async () => {
    const n5 = await addNode("vxlan", { podCIDR: null });
    const agent = startAgent(n5);
    const ready = await until(
      async () => {
        const r = await lab.http(n5.ns, "/readyz");
        return r.status === 503 && r.body.includes("--allocate-node-cidrs") ? JSON.parse(r.body) : false;
      },
      "the new node's /readyz to name the missing podCIDR",
      30_000,
    );
    expect(ready.reasons[0]).toBe(
      `Node ${n5.name} has no podCIDR yet; waiting for kube-controller-manager to assign one (it does only when started with --allocate-node-cidrs=true --cluster-cidr=${NETWORK}; kubeadm: init --pod-network-cidr)`,
    );
    expect((await lab.http(n5.ns, "/healthz")).status).toBe(200);
    // it keeps asking (the stand-in saw several reads of node-5) but said so once
    await until(
      async () =>
        (await api.requests()).filter((q) => q.method === "GET" && q.path === `/api/v1/nodes/${n5.name}`)
          .length >= 4,
      "the agent to ask for its Node again",
      30_000,
    );
    const said = (await lab.log(agent)).split("\n").filter((l) => l.includes("--allocate-node-cidrs"));
    expect(said.length).toBe(1);
    expect(agent.proc.exitCode).toBeNull();
    const podCIDR = `198.19.${n5.index}.0/24`;
    await api.setPodCidr(n5.name, [podCIDR]);
    await waitReady(lab, n5.ns, agent, 8471, 30_000);
    expect(formatCidr(parseSubnetEnv(readFileSync(n5.subnetFile, "utf8")).subnet)).toBe(podCIDR);
    await converged(
      ["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24", podCIDR],
      "every agent to program it",
    );
    await lab.stop(agent);
    n5.agent = null;
    await api.deleteNode(n5.name);
    await converged(["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"], "the new node gone again");
    await unprogrammed(podCIDR, "the new node's subnet to be unprogrammed");
  }, 120_000);

  test("bad annotations on other Nodes are skipped, counted by reason and logged once, never programmed", async () => {
    const ann = (i: number) => flanneldVxlanAnnotations(`198.18.0.${100 + i}`, macFor(100 + i));
    await api.createNode(
      makeNode({
        name: "bad-json",
        podCIDR: "198.19.7.0/24",
        annotations: { ...ann(7), [`${P}/backend-data`]: "{VNI:1" },
      }),
    );
    await api.createNode(
      makeNode({
        name: "bad-mac",
        podCIDR: "198.19.8.0/24",
        annotations: { ...ann(8), [`${P}/backend-data`]: '{"VNI":1,"VtepMAC":"zz:zz:zz:zz:zz:zz"}' },
      }),
    );
    await api.createNode(makeNode({ name: "outside", podCIDR: "10.244.9.0/24", annotations: ann(9) }));
    for (const n of agents())
      await until(
        async () =>
          (await metric(n, `tartan_kube_nodes_skipped{reason="bad-backend-data"}`)) === 1 &&
          (await metric(n, `tartan_kube_nodes_skipped{reason="bad-vtep-mac"}`)) === 1 &&
          (await metric(n, `tartan_kube_nodes_skipped{reason="outside-network"}`)) === 1,
        `${n.name} to count the bad Nodes`,
      );
    // another change to a bad Node: still skipped, not logged again
    await api.annotateNodes(["bad-json", "bad-mac"], { "example.com/touched": "yes" });
    // a valid lease of another prefix length, made after (so seen after those changes): the
    // kernel backend routes it, ebpf-vxlan refuses it loudly
    await api.createNode(makeNode({ name: "half", podCIDR: "198.19.10.128/25", annotations: ann(10) }));
    const n1 = nodes[0]!;
    const n2 = nodes[1]!;
    for (const n of agents())
      await until(
        async () => (await status(lab, n.ns)).leases.some((l) => l.subnet === "198.19.10.128/25"),
        `${n.name} to take the /25 as a lease`,
      );
    for (const n of agents()) {
      const s = await status(lab, n.ns);
      const subnets = s.leases.map((l) => l.subnet);
      for (const bad of ["198.19.7.0/24", "198.19.8.0/24", "10.244.9.0/24"])
        expect(subnets).not.toContain(bad);
      const log = await lab.log(n.agent!);
      for (const name of ["bad-json", "bad-mac", "outside"])
        expect(
          log.split("\n").filter((l) => l.includes("Node is not a lease") && l.includes(`node=${name} `)),
        ).toHaveLength(1);
    }
    const routes = await lab.must(n2.ns, ["ip", "route", "show"]);
    for (const bad of ["198.19.7.0", "198.19.8.0", "10.244.9.0"]) expect(routes).not.toContain(bad);
    await until(
      async () => (await lab.must(n2.ns, ["ip", "route", "show", "198.19.10.128/25"])).includes("flannel.1"),
      "the vxlan node to route the /25",
    );
    await until(
      async () =>
        (await lab.log(n1.agent!)).includes("lease cannot be reached over VXLAN from this node; skipped") &&
        (await lab.log(n1.agent!)).includes("prefix length /25 differs"),
      "the ebpf-vxlan node to refuse the /25 loudly",
    );
    const { readSubnetMap } = await import("../../src/backend/ebpf-vxlan/inspect.ts");
    const entries = readSubnetMap(n1.bpffs)!.map(([k]) => `${formatIp4(k.addr)}/${k.prefixLen}`);
    expect(entries.sort()).toEqual(["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24"]);
    for (const name of ["bad-json", "bad-mac", "outside", "half"]) await api.deleteNode(name);
  }, 60_000);

  test("host-gw nodes in this mode: backend-data null, pods reach each other", async () => {
    const h1 = await addNode("host-gw");
    const h2 = await addNode("host-gw");
    for (const h of [h1, h2]) startAgent(h);
    for (const h of [h1, h2]) await waitReady(lab, h.ns, h.agent!, 8471, 60_000);
    for (const h of [h1, h2]) {
      const a = (await api.getNode(h.name))!.metadata.annotations;
      expect(a).toEqual({
        [`${P}/backend-data`]: "null",
        [`${P}/backend-type`]: "host-gw",
        [`${P}/kube-subnet-manager`]: "true",
        [`${P}/public-ip`]: h.ip,
      });
    }
    await until(
      async () =>
        (await lab.must(h1.ns, ["ip", "route", "show", `198.19.${h2.index}.0/24`])).includes(`via ${h2.ip}`),
      "node h1 to route h2's podCIDR via h2",
    );
    const p1 = await addPod(h1);
    const p2 = await addPod(h2);
    expect((await ping(lab, p1.ns, p2.ip)).received).toBe(3);
    expect((await ping(lab, p2.ns, p1.ip)).received).toBe(3);
    for (const h of [h1, h2]) {
      await lab.stop(h.agent!);
      h.agent = null;
      await api.deleteNode(h.name);
    }
  }, 120_000);
});
