/**
 * Dual stack in Kubernetes mode (flannel's EnableIPv6 with --kube-subnet-mgr): our Node's
 * podCIDRs per family (either order, the IPv6 one waited for and checked against
 * IPv6Network), a dual-stack Node as flannel's dual-stack lease record, the annotations a
 * dual-stack node publishes (public-ipv6, backend-v6-data, the overwrite), and the kube
 * source doing all of it against the stand-in API server on loopback.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatCidr, formatIp4, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6, parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import type { KubeOptions } from "../../src/config/options.ts";
import { annotationNames, annotationPatch, desiredAnnotations } from "../../src/kube/annotations.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { resolveConnection } from "../../src/kube/connection.ts";
import { type NodeLike, nodeLease } from "../../src/kube/node-lease.ts";
import { ownSubnets, selectPodCidrs } from "../../src/kube/pod-cidr.ts";
import { KubeSource } from "../../src/lease/kube-source.ts";
import { decodeLeaseRecord } from "../../src/lease/lease.ts";
import { LeaseRefusedError, NetworkConfigError, SourceWaitingError } from "../../src/lease/source.ts";
import { silentLogger } from "../../src/log.ts";
import { type KubeApiServer, startKubeApiServer } from "../helpers/kube-apiserver.ts";
import { flanneldDualVxlanAnnotations, flanneldVxlanAnnotations, makeNode } from "../helpers/kube-nodes.ts";
import { until } from "../helpers/netns.ts";

const P = "flannel.alpha.coreos.com";
const names = annotationNames();
const NETS = { network: parseCidr("198.19.0.0/16")!, network6: parseCidr6("fd00:19::/56")! };
const V4_ONLY = { network: NETS.network, network6: null };
const DUAL_CONF = { Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "fd00:19::/56" };
const MAC = "0e:7a:00:00:00:07";
const MAC6 = "0e:7b:00:00:00:07";

describe("our podCIDRs", () => {
  const own = (podCIDRs: string[] | undefined, nets: typeof NETS | typeof V4_ONLY = NETS) =>
    ownSubnets(
      "n1",
      podCIDRs ? { podCIDR: podCIDRs[0], podCIDRs } : {},
      nets,
      "/etc/kube-flannel/net-conf.json",
    );

  test("one per family, in either order; host bits masked as Go's net.ParseCIDR does", () => {
    for (const list of [
      ["198.19.3.0/24", "fd00:19:0:3::/64"],
      ["fd00:19:0:3::1/64", "198.19.3.0/24"],
    ]) {
      const r = own(list);
      expect(r.ok && [formatCidr(r.v4), formatCidr6(r.v6!)]).toEqual(["198.19.3.0/24", "fd00:19:0:3::/64"]);
    }
    const pc = selectPodCidrs({ podCIDR: "fd00:19:0:3::/64" });
    expect(pc.ok && pc.cidrs.v4 === null && formatCidr6(pc.cidrs.v6!)).toBe("fd00:19:0:3::/64");
  });

  test("EnableIPv6 without an IPv6 podCIDR: waiting, naming both --cluster-cidr ranges", () => {
    expect(own(["198.19.3.0/24"])).toEqual({
      ok: false,
      waiting: true,
      why: "Node n1 has podCIDR 198.19.3.0/24 but no IPv6 podCIDR yet, and /etc/kube-flannel/net-conf.json enables IPv6; waiting for kube-controller-manager to assign one (it does only when started with --allocate-node-cidrs=true --cluster-cidr=198.19.0.0/16,fd00:19::/56; kubeadm: init --pod-network-cidr=198.19.0.0/16,fd00:19::/56)",
    });
    expect(own(undefined)).toMatchObject({
      ok: false,
      waiting: true,
      why: expect.stringContaining("has no podCIDR yet; waiting for kube-controller-manager"),
    });
  });

  test("an IPv6 podCIDR outside IPv6Network, an IPv6-only Node: final, naming the fix", () => {
    expect(own(["198.19.3.0/24", "fd00:20::/64"])).toEqual({
      ok: false,
      waiting: false,
      why: "Node n1's IPv6 podCIDR fd00:20::/64 is not inside the IPv6 network fd00:19::/56 (IPv6Network of /etc/kube-flannel/net-conf.json): set IPv6Network to the IPv6 cluster CIDR, the second of kube-controller-manager's --cluster-cidr",
    });
    expect(own(["fd00:19:0:3::/64"])).toMatchObject({
      ok: false,
      waiting: false,
      why: expect.stringContaining("IPv6-only clusters are not supported; dual stack is, with EnableIPv6"),
    });
  });

  test("without EnableIPv6 an IPv6 podCIDR is passed over, as flannel does", () => {
    const r = own(["198.19.3.0/24", "fd00:20::/64"], V4_ONLY);
    expect(r.ok && [formatCidr(r.v4), r.v6]).toEqual(["198.19.3.0/24", null]);
  });
});

function node(podCIDRs: string[], annotations: Record<string, string>): NodeLike {
  const n = makeNode({ name: "n7", podCIDRs, annotations }) as { metadata: Record<string, unknown> };
  n.metadata.resourceVersion = "42";
  return n as NodeLike;
}

const DUAL_ANN = flanneldDualVxlanAnnotations("198.18.0.7", MAC, "fd00:18::7", MAC6);
const PODS = ["198.19.7.0/24", "fd00:19:0:7::/64"];

describe("a dual-stack Node → flannel's dual-stack lease record", () => {
  const cfg = { ...parseNetworkConfig(JSON.stringify(DUAL_CONF)), podCidrSubnets: true };

  test("key with both subnets; PublicIPv6 and BackendV6Data in flannel's field order; the decoder takes it", () => {
    const r = nodeLease(node(PODS, DUAL_ANN), names, NETS);
    expect(r.ok && r.record).toEqual({
      key: "198.19.7.0-24&fd00:19:0:7::-64",
      value: `{"PublicIP":"198.18.0.7","PublicIPv6":"fd00:18::7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${MAC}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${MAC6}"}}`,
      expiresAt: null,
      revision: 42,
    });
    if (!r.ok) return;
    const d = decodeLeaseRecord(r.record, cfg);
    expect(
      d.ok && [formatCidr6(d.lease.subnet6!), formatIp6(d.lease.attrs.publicIpv6!), d.lease.attrs.vxlan6],
    ).toEqual(["fd00:19:0:7::/64", "fd00:18::7", { VNI: 1, VtepMAC: MAC6 }]);
    // IPv6 podCIDRs of any prefix length inside IPv6Network are leases, as IPv4 ones are
    const r56 = nodeLease(node(["198.19.7.0/24", "fd00:19:0:7::/80"], DUAL_ANN), names, NETS);
    expect(r56.ok && decodeLeaseRecord(r56.record, cfg).ok).toBe(true);
  });

  test("host-gw: PublicIPv6, no BackendV6Data (its annotation is null)", () => {
    const a = {
      ...DUAL_ANN,
      [`${P}/backend-type`]: "host-gw",
      [`${P}/backend-data`]: "null",
      [`${P}/backend-v6-data`]: "null",
    };
    const r = nodeLease(node(PODS, a), names, NETS);
    expect(r.ok && r.record.value).toBe(
      '{"PublicIP":"198.18.0.7","PublicIPv6":"fd00:18::7","BackendType":"host-gw"}',
    );
  });

  test("a Node announcing no IPv6 (no public-ipv6, or no IPv6 podCIDR) is an IPv4-only lease", () => {
    const v4only = nodeLease(node(PODS, flanneldVxlanAnnotations("198.18.0.7", MAC)), names, NETS);
    expect(v4only.ok && v4only.record.key).toBe("198.19.7.0-24");
    const noPod6 = nodeLease(node(["198.19.7.0/24"], DUAL_ANN), names, NETS);
    expect(noPod6.ok && noPod6.record.value).toBe(
      `{"PublicIP":"198.18.0.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${MAC}"}}`,
    );
  });

  test("without EnableIPv6 the IPv6 half is passed over", () => {
    const r = nodeLease(node(PODS, DUAL_ANN), names, V4_ONLY);
    expect(r.ok && r.record.key).toBe("198.19.7.0-24");
    expect(r.ok && r.record.value).not.toContain("IPv6");
  });

  test("a bad IPv6 half is skipped with its reason, never half-programmed", () => {
    const cases: [string[], Record<string, string>, string, string][] = [
      [PODS, { ...DUAL_ANN, [`${P}/public-ipv6`]: "198.18.0.7" }, "bad-public-ip", "not an IPv6 address"],
      [
        ["198.19.7.0/24", "fd00:20::/64"],
        DUAL_ANN,
        "outside-network",
        "fd00:20::/64 is not inside the IPv6 network",
      ],
      [
        PODS,
        { ...DUAL_ANN, [`${P}/backend-v6-data`]: "null" },
        "missing-annotation",
        "backend-v6-data is missing",
      ],
      [
        PODS,
        { ...DUAL_ANN, [`${P}/backend-v6-data`]: "{x" },
        "bad-backend-data",
        "backend-v6-data is not JSON",
      ],
      [PODS, { ...DUAL_ANN, [`${P}/backend-v6-data`]: '{"VNI":1,"VtepMAC":"zz"}' }, "bad-vtep-mac", '"zz"'],
    ];
    for (const [pods, a, reason, detail] of cases) {
      const r = nodeLease(node(pods, a), names, NETS);
      expect(r).toMatchObject({ ok: false, reason, detail: expect.stringContaining(detail) });
    }
  });
});

describe("the annotations a dual-stack node publishes", () => {
  const base = {
    publicIp: "198.18.0.1",
    backendType: "vxlan",
    vxlan: { VNI: 1, VtepMAC: "0e:7a:00:00:00:01" },
  };

  test("vxlan: public-ipv6 and backend-v6-data as flanneld writes them, keys sorted in the patch", () => {
    const want = desiredAnnotations(
      names,
      { ...base, publicIpv6: "fd00:18::1", vxlan6: { VNI: 1, VtepMAC: MAC6 } },
      {},
    );
    expect(want).toEqual(flanneldDualVxlanAnnotations("198.18.0.1", "0e:7a:00:00:00:01", "fd00:18::1", MAC6));
    expect(annotationPatch({}, want)).toBe(
      `{"metadata":{"annotations":{"${P}/backend-data":"{\\"VNI\\":1,\\"VtepMAC\\":\\"0e:7a:00:00:00:01\\"}","${P}/backend-type":"vxlan","${P}/backend-v6-data":"{\\"VNI\\":1,\\"VtepMAC\\":\\"${MAC6}\\"}","${P}/kube-subnet-manager":"true","${P}/public-ip":"198.18.0.1","${P}/public-ipv6":"fd00:18::1"}}}`,
    );
  });

  test("host-gw: backend-v6-data null; public-ipv6-overwrite wins; no IPv6 address: nothing of IPv6", () => {
    const hg = { publicIp: "198.18.0.1", backendType: "host-gw", vxlan: null, publicIpv6: "fd00:18::1" };
    expect(desiredAnnotations(names, hg, { [`${P}/public-ipv6-overwrite`]: "fd00:18::99" })).toEqual({
      [`${P}/backend-data`]: "null",
      [`${P}/backend-type`]: "host-gw",
      [`${P}/backend-v6-data`]: "null",
      [`${P}/kube-subnet-manager`]: "true",
      [`${P}/public-ip`]: "198.18.0.1",
      [`${P}/public-ipv6`]: "fd00:18::99",
    });
    expect(Object.keys(desiredAnnotations(names, { ...hg, publicIpv6: null }, {}))).not.toContain(
      `${P}/public-ipv6`,
    );
    expect(Object.keys(desiredAnnotations(names, base, {}))).not.toContain(`${P}/backend-v6-data`);
  });
});

// --- the kube source, on the stand-in ------------------------------------------------------

const KUBE: KubeOptions = {
  apiUrl: null,
  kubeconfigFile: null,
  annotationPrefix: P,
  setNodeNetworkUnavailable: true,
};
const ATTRS = {
  publicIp: parseIp4("198.18.0.1")!,
  publicIpv6: parseIp6("fd00:18::1")!,
  backendType: "vxlan",
  vxlan: { VNI: 1, VtepMAC: "0e:7a:00:00:00:01" },
  vxlan6: { VNI: 1, VtepMAC: "0e:7b:00:00:00:01" },
};
const MEMORY = { previous: null, owned: new Set<string>() };
const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => e as Error,
  );

describe("the kube source with EnableIPv6", () => {
  let api: KubeApiServer;
  let dir: string;
  let netConf: string;
  let src: KubeSource;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tartan-kube-dual-"));
    netConf = join(dir, "net-conf.json");
    writeFileSync(netConf, JSON.stringify({ ...DUAL_CONF, Backend: { Type: "vxlan" } }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    api = await startKubeApiServer();
    src = new KubeSource({
      kube: KUBE,
      nodeName: "node-1",
      netConfigPath: netConf,
      log: silentLogger,
      client: new KubeClient(resolveConnection({ apiUrl: api.url }, {})),
    });
  });
  afterEach(async () => {
    await src.close();
    await api.close();
  });

  test("waits for the IPv6 podCIDR; IPv6SubnetLen is its length; one outside IPv6Network is final", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    const waiting = await failure(src.networkConfig());
    expect(waiting).toBeInstanceOf(SourceWaitingError);
    expect(waiting.message).toContain("Node node-1 has podCIDR 198.19.1.0/24 but no IPv6 podCIDR yet");
    await api.setPodCidr("node-1", ["198.19.1.0/24", "fd00:19:0:1::/80"]);
    const cfg = await src.networkConfig();
    expect([cfg.subnetLen, cfg.ipv6?.subnetLen, formatCidr6(cfg.ipv6!.network)]).toEqual([
      24,
      80,
      "fd00:19::/56",
    ]);
    await api.setPodCidr("node-1", ["198.19.1.0/24", "fd00:aa::/64"]);
    const outside = await failure(src.networkConfig());
    expect(outside).toBeInstanceOf(NetworkConfigError);
    expect(outside.message).toContain(
      "IPv6 podCIDR fd00:aa::/64 is not inside the IPv6 network fd00:19::/56",
    );
  });

  test("acquire: the six annotations byte for byte, a dual-stack lease whose record is the one peers see", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDRs: ["fd00:19:0:1::/64", "198.19.1.0/24"] }));
    const config = await src.networkConfig();
    const lease = await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect([lease.key, formatCidr6(lease.subnet6!), formatIp6(lease.attrs.publicIpv6!)]).toEqual([
      "198.19.1.0-24&fd00:19:0:1::-64",
      "fd00:19:0:1::/64",
      "fd00:18::1",
    ]);
    const node = (await api.getNode("node-1"))!;
    expect(node.metadata.annotations).toEqual(
      flanneldDualVxlanAnnotations("198.18.0.1", "0e:7a:00:00:00:01", "fd00:18::1", "0e:7b:00:00:00:01"),
    );
    const { records } = await src.list();
    const own = decodeLeaseRecord(records.find((r) => r.key === lease.key)!, config);
    expect(own.ok && own.lease.attrs).toEqual(lease.attrs);
    await api.clearRequests();
    await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect((await api.requests()).filter((r) => r.method === "PATCH")).toEqual([]);
  });

  test("alloc announces no IPv6 (as flannel): its lease is IPv4-only, the same key peers read from its Node", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDRs: ["198.19.1.0/24", "fd00:19:0:1::/64"] }));
    const config = await src.networkConfig();
    const attrs = { ...ATTRS, backendType: "alloc", vxlan: null, vxlan6: null };
    const lease = await src.acquire({ config, attrs, memory: MEMORY });
    expect([lease.key, lease.subnet6 ?? null]).toEqual(["198.19.1.0-24", null]);
    const ann = (await api.getNode("node-1"))!.metadata.annotations;
    expect(Object.keys(ann).filter((k) => k.includes("v6"))).toEqual([]);
    expect((await src.list()).records.map((r) => r.key)).toEqual([lease.key]);
  });

  test("public-ipv6-overwrite: published and carried by our lease; one that is no IPv6 address is refused", async () => {
    await api.createNode(
      makeNode({
        name: "node-1",
        podCIDRs: PODS.map((c) => c.replace("7", "1")),
        annotations: { [`${P}/public-ipv6-overwrite`]: "fd00:18::99" },
      }),
    );
    const config = await src.networkConfig();
    const lease = await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect([formatIp4(lease.attrs.publicIp), formatIp6(lease.attrs.publicIpv6!)]).toEqual([
      "198.18.0.1",
      "fd00:18::99",
    ]);
    expect((await api.getNode("node-1"))!.metadata.annotations[`${P}/public-ipv6`]).toBe("fd00:18::99");
    await api.annotateNodes(["node-1"], { [`${P}/public-ipv6-overwrite`]: "198.18.0.99" });
    const e = await failure(src.acquire({ config, attrs: ATTRS, memory: MEMORY }));
    expect(e).toBeInstanceOf(LeaseRefusedError);
    expect(e.message).toContain(
      `annotation ${P}/public-ipv6-overwrite="198.18.0.99" on Node node-1 is not an IPv6 address`,
    );
  });

  test("peers: dual-stack and IPv4-only Nodes are leases side by side", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDRs: ["198.19.1.0/24", "fd00:19:0:1::/64"] }));
    await api.createNode(
      makeNode({ name: "node-2", podCIDRs: ["198.19.2.0/24", "fd00:19:0:2::/64"], annotations: DUAL_ANN }),
    );
    await api.createNode(
      makeNode({
        name: "node-3",
        podCIDR: "198.19.3.0/24",
        annotations: flanneldVxlanAnnotations("198.18.0.3", MAC),
      }),
    );
    const config = await src.networkConfig();
    await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    const { records } = await src.list();
    expect(records.map((r) => r.key).sort()).toEqual([
      "198.19.1.0-24&fd00:19:0:1::-64",
      "198.19.2.0-24&fd00:19:0:2::-64",
      "198.19.3.0-24",
    ]);
    expect(records.every((r) => decodeLeaseRecord(r, config).ok)).toBe(true);
  });

  test("two Nodes with one IPv4 podCIDR are one lease, whatever their IPv6 ones; the other takes over when the first goes", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDRs: ["198.19.1.0/24", "fd00:19:0:1::/64"] }));
    await api.createNode(
      makeNode({ name: "node-2", podCIDRs: ["198.19.2.0/24", "fd00:19:0:2::/64"], annotations: DUAL_ANN }),
    );
    await api.createNode(
      makeNode({ name: "node-4", podCIDRs: ["198.19.2.0/24", "fd00:19:0:4::/64"], annotations: DUAL_ANN }),
    );
    await src.networkConfig();
    const { records, revision } = await src.list();
    expect(records.map((r) => r.key)).toEqual(["198.19.2.0-24&fd00:19:0:2::-64"]);
    expect(src.skippedByReason()["duplicate-podcidr"]).toBe(1);
    const events: string[] = [];
    const w = src.watch(revision, {
      onEvents: (evs) =>
        events.push(...evs.map((e) => `${e.type} ${"key" in e ? e.key : "record" in e ? e.record.key : ""}`)),
    });
    try {
      await api.deleteNode("node-2");
      await until(async () => events.length >= 2, "the delete and the takeover");
      expect(events).toEqual(["delete 198.19.2.0-24&fd00:19:0:2::-64", "put 198.19.2.0-24&fd00:19:0:4::-64"]);
      expect(src.skippedByReason()["duplicate-podcidr"]).toBe(0);
    } finally {
      w.stop();
    }
  });
});
