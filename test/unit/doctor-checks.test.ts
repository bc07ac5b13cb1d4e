import { describe, expect, test } from "bun:test";
import { parseCidr } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import {
  type Check,
  checkAgent,
  checkBridge,
  checkBrNetfilter,
  checkChecksumOffload,
  checkCniConfig,
  checkDatapath,
  checkForwardPolicy,
  checkIpForward,
  checkLease,
  checkMasquerade,
  checkMtu,
  checkPeers,
  checkRegistry,
  checkRemoteLeases,
  checkRpFilter,
  checkStaleEntries,
  checkSubnetEnv,
  judge,
  kernelBefore,
  staleEntries,
} from "../../src/doctor/checks.ts";
import { type BpfFacts, type Facts, fact, factError, type SubnetMapEntry } from "../../src/doctor/facts.ts";
import { probeWindow } from "../../src/doctor/gather.ts";
import { parseNftJson } from "../../src/doctor/nft-rules.ts";
import { healthy, lease, MAC1, MAC2, NOW, OWN, PEER, withLink } from "./doctor-fixture.ts";

const problem = (c: Check) => {
  expect(c.status).toBe("problem");
  return c;
};

describe("doctor checks: a healthy vxlan node", () => {
  test("every check is ok", () => {
    const bad = judge(healthy()).filter((c) => c.status !== "ok");
    expect(bad).toEqual([]);
  });
  test("every check has an id, a finding and a why", () => {
    for (const c of judge(healthy())) {
      expect(c.id).toMatch(/^[a-z-]+$/);
      expect(c.finding.length).toBeGreaterThan(5);
      expect(c.why.length).toBeGreaterThan(10);
    }
  });
});

describe("agent and registry", () => {
  test("no agent answering is a warning, an unhealthy agent a problem", () => {
    expect(checkAgent({ ...healthy(), agent: factError("connection refused") }).status).toBe("warning");
    const f = healthy();
    const a = f.agent.ok ? f.agent.value : null;
    const sick = {
      ...a!,
      status: { ...a!.status, health: { ok: false, reasons: ["vxlan device flannel.1 is missing"] } },
    };
    const c = problem(checkAgent({ ...f, agent: fact(sick) }));
    expect(c.finding).toContain("vxlan device flannel.1 is missing");
  });
  test("an unreachable registry is a problem naming the error", () => {
    const c = problem(
      checkRegistry({ ...healthy(), registry: factError("etcd:https://a:2379: connect ECONNREFUSED") }),
    );
    expect(c.finding).toContain("ECONNREFUSED");
  });
  test("invalid records are a warning naming the key", () => {
    const f = healthy();
    const r = f.registry.ok ? f.registry.value : null;
    const c = checkRegistry({
      ...f,
      registry: fact({ ...r!, invalid: [{ key: "198.19.9.0-24", reason: "value is not JSON" }] }),
    });
    expect(c.status).toBe("warning");
    expect(c.finding).toContain("198.19.9.0-24: value is not JSON");
  });
  test("no network config is a problem", () => {
    expect(
      checkRegistry({ ...healthy(), config: factError("no network config in the registry") }).status,
    ).toBe("problem");
  });
});

describe("lease", () => {
  test("missing lease is a problem naming the PublicIP", () => {
    const c = problem(checkLease({ ...healthy(), ownLease: null }));
    expect(c.finding).toBe("no lease in sqlite:/reg.db has PublicIP 198.18.0.1");
  });
  test("with the underlay unknown it says so, never 'PublicIP ?'", () => {
    const f: Facts = { ...healthy(), ownLease: null, underlay: factError("--iface=eth9: no interface eth9") };
    const c = problem(checkLease(f));
    expect(c.finding).toBe(
      "cannot find this node's lease in sqlite:/reg.db: its PublicIP is unknown (see the underlay check)",
    );
    expect(checkLease({ ...f, registry: factError("down") }).finding).toBe(
      "cannot check the lease of this node: the registry is unreachable",
    );
  });
  test("a lease expiring within 5 minutes, or expired, is a problem", () => {
    const soon = { ...OWN, expiresAt: NOW + 60_000 };
    expect(problem(checkLease({ ...healthy(), ownLease: soon })).finding).toContain("expires in 60s");
    const gone = { ...OWN, expiresAt: NOW - 120_000 };
    expect(problem(checkLease({ ...healthy(), ownLease: gone })).finding).toContain("expired 2m ago");
  });
  test("the agent holding another subnet than the registry's lease is a problem", () => {
    const c = problem(checkLease({ ...healthy(), ownLease: lease("198.19.7.0/24", "198.18.0.1", MAC1) }));
    expect(c.finding).toContain("the agent holds 198.19.1.0/24");
  });
  test("a reservation is ok; a healthy lease reports its remaining time", () => {
    expect(checkLease({ ...healthy(), ownLease: { ...OWN, expiresAt: null } }).status).toBe("ok");
    expect(checkLease(healthy()).finding).toContain("expires in 24h00m");
  });
});

describe("subnet.env", () => {
  test("missing is a fixable problem naming the file", () => {
    const c = problem(checkSubnetEnv({ ...healthy(), subnetEnv: { kind: "missing" } }));
    expect(c.finding).toBe("/run/flannel/subnet.env is missing");
    expect(c.fixable).toBe(true);
  });
  test("unparseable, another subnet, another MTU: problems", () => {
    expect(
      problem(
        checkSubnetEnv({ ...healthy(), subnetEnv: { kind: "invalid", reason: "FLANNEL_MTU is missing" } }),
      ).finding,
    ).toContain("FLANNEL_MTU is missing");
    const f = healthy();
    const env = f.subnetEnv.kind === "ok" ? f.subnetEnv.env : null;
    const other = {
      ...f,
      subnetEnv: { kind: "ok" as const, env: { ...env!, subnet: parseCidr("198.19.5.0/24")! } },
    };
    expect(problem(checkSubnetEnv(other)).finding).toContain(
      "FLANNEL_SUBNET=198.19.5.1/24, the lease is 198.19.1.0/24",
    );
    const mtu = { ...f, subnetEnv: { kind: "ok" as const, env: { ...env!, mtu: 1500 } } };
    expect(problem(checkSubnetEnv(mtu)).finding).toContain("FLANNEL_MTU=1500, the overlay needs 1450");
  });
  test("FLANNEL_IPMASQ disagreeing with --ip-masq is a warning", () => {
    const f = healthy();
    const c = checkSubnetEnv({ ...f, settings: { ...f.settings, ipMasq: false } });
    expect(c.status).toBe("warning");
  });
  test("without a lease it cannot be rewritten", () => {
    expect(checkSubnetEnv({ ...healthy(), ownLease: null, subnetEnv: { kind: "missing" } }).fixable).toBe(
      false,
    );
  });
});

describe("bridge", () => {
  test("another address on cni0 is a fixable problem naming both addresses", () => {
    const c = problem(checkBridge(withLink(healthy(), "cni0", { addrs: ["198.19.9.1/24"] })));
    expect(c.finding).toBe("cni0 has 198.19.9.1/24, lease 198.19.1.0/24 needs exactly 198.19.1.1/24");
    expect(c.fixable).toBe(true);
  });
  test("an extra address besides the right one is a problem too", () => {
    const c = problem(
      checkBridge(withLink(healthy(), "cni0", { addrs: ["198.19.1.1/24", "198.19.9.1/24"] })),
    );
    expect(c.details).toEqual(["stale address 198.19.9.1/24 on cni0"]);
  });
  test("no bridge yet is ok; a down bridge is a problem", () => {
    expect(checkBridge(withLink(healthy(), "cni0", null)).status).toBe("ok");
    expect(problem(checkBridge(withLink(healthy(), "cni0", { up: false }))).finding).toContain("is down");
  });
});

describe("datapath", () => {
  test("a missing vxlan device is a problem that needs the agent", () => {
    const c = problem(checkDatapath(withLink(healthy(), "flannel.1", null)));
    expect(c.finding).toBe("overlay device flannel.1 is missing");
    expect(c.fixable).toBe(false);
  });
  test("a stale MAC (not the lease's VtepMAC) is named with both MACs", () => {
    const c = problem(checkDatapath(withLink(healthy(), "flannel.1", { mac: "0e:00:00:00:00:99" })));
    expect(c.finding).toContain(
      `flannel.1 has MAC 0e:00:00:00:00:99, lease 198.19.1.0/24 announces VtepMAC ${MAC1}`,
    );
  });
  test("learning on, wrong VNI or port are problems", () => {
    const vx = { id: 2, local: "198.18.0.1", port: 4789, learning: true };
    const c = problem(checkDatapath(withLink(healthy(), "flannel.1", { vxlan: vx })));
    expect(c.details).toContain("flannel.1 has VNI 2, the network config says 1");
    expect(c.details).toContain("flannel.1 uses UDP port 4789, the network config says 8472");
    expect(c.details!.some((d) => d.includes("learning on"))).toBe(true);
  });
  test("down or without its VTEP address: fixable", () => {
    const c = problem(checkDatapath(withLink(healthy(), "flannel.1", { up: false, addrs: [] })));
    expect(c.fixable).toBe(true);
    expect(c.details).toContain("flannel.1 is down");
  });
  const OVERLAY_ROUTE = { dst: "198.19.0.0/16", gateway: "198.19.0.0", dev: "tartan.1", flags: ["onlink"] };
  const ebpf = (bpf: Omit<BpfFacts, "members">): Facts => {
    const f = healthy();
    const routes = [...(f.routes.ok ? f.routes.value : []), OVERLAY_ROUTE];
    return withLink(
      withLink(
        {
          ...f,
          settings: { ...f.settings, backend: "ebpf-vxlan" },
          routes: fact(routes),
          bpf: fact({ members: fact({}), ...bpf }),
        },
        "flannel.1",
        null,
      ),
      "lo",
      null,
    );
  };
  const pins = [
    "tartan_subnets",
    "tartan_members",
    "tartan_endpoints",
    "tartan_config",
    "tartan_counters",
    "tartan_nexthops",
    "tartan_subnets6",
    "tartan_members6",
    "tartan_nexthops6",
    "tartan_endpoints6",
  ].map((m) => `maps/${m}`);
  const attachments = [
    { iface: "eth0", hook: "tc-ingress", progId: 1, progName: "tartan_decap_tc" },
    { iface: "tartan.1", hook: "tc-egress", progId: 2, progName: "tartan_encap_host" },
    { iface: "cni0", hook: "tc-ingress", progId: 3, progName: "tartan_encap_fwd" },
  ];
  const pinnedProgIds = { tartan_decap_tc: 1, tartan_encap_host: 2, tartan_encap_fwd: 3 };
  const withOverlay = (f: Facts) => {
    const links = f.links.ok ? f.links.value : [];
    return {
      ...f,
      links: fact([
        ...links,
        {
          name: "tartan.1",
          ifindex: 9,
          kind: "veth",
          mtu: 1450,
          mac: MAC1,
          up: true,
          master: null,
          vxlan: null,
          addrs: ["198.19.1.0/32"],
        },
      ]),
    };
  };
  test("ebpf-vxlan: programs attached and pins present is ok", () => {
    const c = checkDatapath(withOverlay(ebpf({ pins, attachments, pinnedProgIds, subnets: fact([]) })));
    expect(c.status).toBe("ok");
  });
  test("ebpf-vxlan: an attached program that is not the pinned one (an older agent's) is named", () => {
    const old = [{ ...attachments[0]!, progId: 17 }, ...attachments.slice(1)];
    const c = problem(
      checkDatapath(withOverlay(ebpf({ pins, attachments: old, pinnedProgIds, subnets: fact([]) }))),
    );
    expect(c.finding).toContain(
      "eth0 tc-ingress runs tartan_decap_tc id 17, not the pinned (running agent's) id 1",
    );
  });
  test("ebpf-vxlan: a missing pin and a detached decap program are named", () => {
    const c = problem(
      checkDatapath(
        withOverlay(
          ebpf({ pins: pins.slice(1), attachments: attachments.slice(1), pinnedProgIds, subnets: fact([]) }),
        ),
      ),
    );
    expect(c.details).toContain("pins missing under /sys/fs/bpf/tartan/node1: maps/tartan_subnets");
    expect(c.details!.some((d) => d.startsWith("no decap program"))).toBe(true);
  });
  test("ebpf-vxlan: the cluster route via the overlay device missing is named", () => {
    const f = withOverlay(ebpf({ pins, attachments, pinnedProgIds, subnets: fact([]) }));
    const routes = (f.routes.ok ? f.routes.value : []).filter((r) => r.dev !== "tartan.1");
    const c = problem(checkDatapath({ ...f, routes: fact(routes) }));
    expect(c.finding).toBe(
      "route 198.19.0.0/16 via 198.19.0.0 dev tartan.1 onlink is missing: traffic from the node itself has no way into the overlay",
    );
  });
  test("ebpf-vxlan: program names as the kernel keeps them (15 characters) still count", () => {
    const cut = attachments.map((a) => ({ ...a, progName: a.progName.slice(0, 15) }));
    const c = checkDatapath(withOverlay(ebpf({ pins, attachments: cut, pinnedProgIds, subnets: fact([]) })));
    expect(c.status).toBe("ok");
  });
});

describe("remote leases and stale entries", () => {
  test("a deleted route for a remote lease is a fixable problem naming the route", () => {
    const f = healthy();
    const c = problem(
      checkRemoteLeases({ ...f, routes: fact((f.routes.ok ? f.routes.value : []).slice(0, 2)) }),
    );
    expect(c.finding).toBe(
      "lease 198.19.2.0/24: route 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink missing",
    );
    expect(c.fixable).toBe(true);
  });
  test("a neighbour with another MAC and a missing FDB entry are named", () => {
    const c = problem(
      checkRemoteLeases({
        ...healthy(),
        neighbours: fact([{ dst: "198.19.2.0", lladdr: "0e:00:00:00:00:99", state: ["PERMANENT"] }]),
        fdb: fact([]),
      }),
    );
    expect(c.details).toContain(
      `lease 198.19.2.0/24: neigh 198.19.2.0 dev flannel.1 has lladdr 0e:00:00:00:00:99, lease says ${MAC2}`,
    );
    expect(c.details).toContain(`lease 198.19.2.0/24: fdb ${MAC2} dev flannel.1 dst 198.18.0.2 missing`);
  });
  test("a lease of another backend is skipped by design, not a problem", () => {
    const f = healthy();
    const other = lease("198.19.3.0/24", "198.18.0.3", null, "host-gw");
    const r = f.registry.ok ? f.registry.value : null;
    const c = checkRemoteLeases({ ...f, registry: fact({ ...r!, leases: [...r!.leases, other] }) });
    expect(c.status).toBe("ok");
    expect(c.details?.[0]).toContain("198.19.3.0/24 (host-gw) is not programmed by vxlan");
  });
  test("host-gw: a missing route via the peer is named", () => {
    const f = healthy();
    const own = { ...OWN, attrs: { ...OWN.attrs, backendType: "host-gw", vxlan: null } };
    const peer = { ...PEER, attrs: { ...PEER.attrs, backendType: "host-gw", vxlan: null } };
    const hg: Facts = {
      ...f,
      settings: { ...f.settings, backend: "host-gw" },
      registry: fact({ description: "x", leases: [own, peer], invalid: [] }),
      ownLease: own,
      routes: fact([{ dst: "198.18.0.0/16", dev: "eth0", protocol: "kernel", scope: "link" }]),
    };
    expect(problem(checkRemoteLeases(hg)).finding).toBe(
      "lease 198.19.2.0/24: route 198.19.2.0/24 via 198.18.0.2 dev eth0 missing",
    );
    const ok = {
      ...hg,
      routes: fact([
        ...(hg.routes.ok ? hg.routes.value : []),
        { dst: "198.19.2.0/24", gateway: "198.18.0.2", dev: "eth0" },
      ]),
    };
    expect(checkRemoteLeases(ok).status).toBe("ok");
  });
  const peerEntry = { subnet: "198.19.2.0/24", nodeIp: "198.18.0.2", vtepMac: MAC2, local: false };
  const ownEntry = { subnet: "198.19.1.0/24", nodeIp: "198.18.0.1", vtepMac: MAC1, local: true };
  const withMaps = (subnets: SubnetMapEntry[], members: Record<string, number>): Facts => {
    const f = healthy();
    return {
      ...f,
      settings: { ...f.settings, backend: "ebpf-vxlan" },
      bpf: fact({
        pins: [],
        attachments: [],
        pinnedProgIds: {},
        subnets: fact(subnets),
        members: fact(members),
      }),
    };
  };
  test("ebpf-vxlan: the pinned maps carrying every peer as its lease says is ok", () => {
    const c = checkRemoteLeases(withMaps([ownEntry, peerEntry], { "198.18.0.2": 1 }));
    expect(c.status).toBe("ok");
    expect(checkStaleEntries(withMaps([ownEntry, peerEntry], { "198.18.0.2": 1 })).status).toBe("ok");
  });
  test("ebpf-vxlan: a lease absent from the subnet map, and its node absent from the members, are named", () => {
    const c = problem(checkRemoteLeases(withMaps([ownEntry], {})));
    expect(c.details).toEqual([
      "lease 198.19.2.0/24 (198.18.0.2) is not in map tartan_subnets",
      "node 198.18.0.2 is not in map tartan_members: decap drops its VXLAN packets",
    ]);
    expect(c.fixable).toBe(false);
  });
  test("ebpf-vxlan: a subnet entry sending the lease to another VTEP MAC is named with both", () => {
    const wrong = { ...peerEntry, vtepMac: "0e:00:00:00:00:99" };
    expect(problem(checkRemoteLeases(withMaps([wrong], { "198.18.0.2": 1 }))).finding).toBe(
      `lease 198.19.2.0/24: map tartan_subnets sends it to 198.18.0.2 (VTEP MAC 0e:00:00:00:00:99), the lease says 198.18.0.2 (${MAC2})`,
    );
  });
  test("ebpf-vxlan: map entries no lease stands behind are stale, left to an agent restart", () => {
    const gone = { subnet: "198.19.9.0/24", nodeIp: "198.18.0.9", vtepMac: MAC2, local: false };
    const c = problem(
      checkStaleEntries(withMaps([ownEntry, peerEntry, gone], { "198.18.0.2": 1, "198.18.0.9": 1 })),
    );
    expect(c.details).toEqual([
      "map tartan_subnets 198.19.9.0/24 (node 198.18.0.9)",
      "map tartan_members 198.18.0.9",
    ]);
    expect(c.fixable).toBe(false);
    expect(c.fix).toContain("restart the agent");
  });
  test("ebpf-vxlan: without the maps, the agent's view is used", () => {
    const f = withMaps([], {});
    const unread: Facts = {
      ...f,
      bpf: fact({ ...(f.bpf.ok ? f.bpf.value : ({} as BpfFacts)), subnets: factError("no") }),
    };
    expect(problem(checkRemoteLeases(unread)).finding).toBe(
      "lease 198.19.2.0/24 (198.18.0.2) is not programmed, says the agent",
    );
    expect(checkRemoteLeases({ ...unread, agent: factError("down") }).status).toBe("warning");
  });
  test("a route and a neighbour for a subnet with no lease are stale; kernel and own routes are not", () => {
    const f = healthy();
    const routes = [
      ...(f.routes.ok ? f.routes.value : []),
      { dst: "198.19.9.0/24", gateway: "198.19.9.0", dev: "flannel.1", flags: ["onlink"] },
    ];
    const broken: Facts = {
      ...f,
      routes: fact(routes),
      neighbours: fact([
        ...(f.neighbours.ok ? f.neighbours.value : []),
        { dst: "198.19.9.0", lladdr: "0e:00:00:00:00:09" },
      ]),
      fdb: fact([...(f.fdb.ok ? f.fdb.value : []), { mac: "0e:00:00:00:00:09", dst: "198.18.0.9" } as never]),
    };
    expect(staleEntries(broken)).toEqual([
      { kind: "route", spec: "198.19.9.0/24 via 198.19.9.0 dev flannel.1" },
      { kind: "neigh", spec: "198.19.9.0 dev flannel.1" },
      { kind: "fdb", spec: "0e:00:00:00:00:09 dev flannel.1 dst 198.18.0.9 self" },
    ]);
    const c = problem(checkStaleEntries(broken));
    expect(c.finding).toContain("route 198.19.9.0/24 via 198.19.9.0 dev flannel.1");
    expect(c.fixable).toBe(true);
    expect(checkStaleEntries(healthy()).status).toBe("ok");
  });
});

describe("MTU chain", () => {
  test("an overlay MTU below the pods' is a fixable problem showing the chain", () => {
    const c = problem(checkMtu(withLink(healthy(), "flannel.1", { mtu: 1000 })));
    expect(c.finding).toContain("flannel.1 MTU 1000 is below 1450");
    expect(c.finding).toContain("eth0 1500 → flannel.1 1000 → cni0 1450");
    expect(c.fixable).toBe(true);
  });
  test("an overlay MTU that leaves no room for the 50 bytes of VXLAN is a problem", () => {
    expect(problem(checkMtu(withLink(healthy(), "flannel.1", { mtu: 1500 }))).finding).toContain(
      "flannel.1 MTU 1500 is above 1450",
    );
  });
  test("a configured Backend.MTU too big for the underlay is not fixable by doctor", () => {
    const cfg = parseNetworkConfig('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","MTU":1480}}');
    const f = withLink({ ...healthy(), config: fact(cfg) }, "flannel.1", { mtu: 1480 });
    const c = problem(checkMtu(f));
    expect(c.fixable).toBe(false);
    expect(c.details?.[0]).toContain("1480 + 50 bytes of VXLAN exceeds eth0 MTU 1500");
  });
  test("a pod veth above the pod MTU is named", () => {
    const c = problem(checkMtu(withLink(healthy(), "veth1x2", { mtu: 1500 })));
    expect(c.finding).toContain("veth1x2 1500");
  });
  test("healthy chain", () => {
    expect(checkMtu(healthy()).finding).toBe("eth0 1500 → flannel.1 1450 → cni0 1450 → 1 pod veth(s) 1450");
  });
});

describe("sysctls", () => {
  test("ip_forward off is a fixable problem", () => {
    const f = healthy();
    const c = problem(checkIpForward({ ...f, sysctls: { ...f.sysctls, "net.ipv4.ip_forward": "0" } }));
    expect(c.finding).toBe("net.ipv4.ip_forward=0");
    expect(c.fixable).toBe(true);
  });
  test("strict rp_filter breaks ebpf-vxlan (problem), is a warning for vxlan", () => {
    const f = healthy();
    const strict = { ...f, sysctls: { ...f.sysctls, "net.ipv4.conf.eth0.rp_filter": "1" } };
    expect(checkRpFilter(strict).status).toBe("warning");
    const e = problem(checkRpFilter({ ...strict, settings: { ...f.settings, backend: "ebpf-vxlan" } }));
    expect(e.finding).toContain("net.ipv4.conf.eth0.rp_filter=1");
    expect(e.fix).toContain("rp_filter=2");
  });
  test("rp_filter: the effective value is max(all, iface)", () => {
    const f = healthy();
    const all = { ...f, sysctls: { ...f.sysctls, "net.ipv4.conf.all.rp_filter": "1" } };
    expect(checkRpFilter(all).finding).toContain("effective 1");
    const loose = {
      ...f,
      sysctls: { ...f.sysctls, "net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.eth0.rp_filter": "2" },
    };
    expect(checkRpFilter(loose).status).toBe("ok");
  });
  const kube = parseNftJson(
    JSON.stringify({ nftables: [{ chain: { family: "ip", table: "nat", name: "KUBE-SERVICES" } }] }),
  );
  test("br_netfilter missing matters only where kube-proxy runs", () => {
    const f = healthy();
    const off = { ...f, sysctls: { ...f.sysctls, "net.bridge.bridge-nf-call-iptables": null } };
    expect(checkBrNetfilter(off).status).toBe("ok");
    const c = problem(checkBrNetfilter({ ...off, nft: fact(kube) }));
    expect(c.finding).toBe("br_netfilter is not loaded while kube-proxy rules (KUBE-*) are present");
  });
});

describe("firewall", () => {
  const dropChain = (rules: object[]) =>
    parseNftJson(
      JSON.stringify({
        nftables: [
          { chain: { family: "ip", table: "filter", name: "FORWARD", hook: "forward", policy: "drop" } },
          ...rules.map((expr) => ({ rule: { family: "ip", table: "filter", chain: "FORWARD", expr } })),
        ],
      }),
    );
  const accept = (field: string, addr = "198.19.0.0", len = 16) => [
    {
      match: { op: "==", left: { payload: { protocol: "ip", field } }, right: { prefix: { addr, len } } },
    },
    { counter: { packets: 0, bytes: 0 } },
    { accept: null },
  ];
  test("a FORWARD drop policy with no accept for the cluster network is a problem naming the chain", () => {
    const c = problem(checkForwardPolicy({ ...healthy(), nft: fact(dropChain([])) }));
    expect(c.finding).toBe(
      "chain ip filter FORWARD drops by policy and accepts nothing from or to 198.19.0.0/16",
    );
    expect(c.fixable).toBe(true);
  });
  test("one direction only is a warning; both (or a wider prefix) are ok", () => {
    expect(checkForwardPolicy({ ...healthy(), nft: fact(dropChain([accept("saddr")])) }).status).toBe(
      "warning",
    );
    expect(
      checkForwardPolicy({
        ...healthy(),
        nft: fact(dropChain([accept("saddr"), accept("daddr", "198.0.0.0", 8)])),
      }).status,
    ).toBe("ok");
  });
  test("an accept narrowed by another match does not count", () => {
    const narrowed = [
      { match: { op: "==", left: { meta: { key: "iifname" } }, right: "eth9" } },
      ...accept("saddr"),
    ];
    expect(checkForwardPolicy({ ...healthy(), nft: fact(dropChain([narrowed])) }).status).toBe("problem");
  });
  test("--ip-masq without table ip tartan is a problem; a leftover table without --ip-masq a warning", () => {
    const empty = parseNftJson('{"nftables":[]}');
    const c = problem(checkMasquerade({ ...healthy(), nft: fact(empty) }));
    expect(c.finding).toBe("table ip tartan is missing though --ip-masq is on");
    const f = healthy();
    expect(checkMasquerade({ ...f, settings: { ...f.settings, ipMasq: false } }).status).toBe("warning");
    expect(checkMasquerade(healthy()).status).toBe("ok");
  });
});

describe("CNI config directory", () => {
  const files = (names: [string, string[] | null][]) =>
    names.map(([name, types]) => ({ name, types: types ?? [], invalid: types ? null : "not JSON" }));
  test("a file sorting before ours wins: a problem naming it", () => {
    const f = healthy();
    const c = problem(
      checkCniConfig({
        ...f,
        cni: {
          ...f.cni,
          files: files([
            ["00-bridge.conf", ["bridge"]],
            ["10-tartan.conflist", ["tartan"]],
          ]),
        },
      }),
    );
    expect(c.finding).toBe(
      "/etc/cni/net.d/00-bridge.conf (plugins bridge) sorts before 10-tartan.conflist and wins",
    );
    expect(c.fixable).toBe(false);
  });
  test("an invalid file before ours is named too; files after ours are fine", () => {
    const f = healthy();
    const bad = checkCniConfig({
      ...f,
      cni: {
        ...f.cni,
        files: files([
          ["05-x.conf", null],
          ["10-flannel.conflist", ["flannel"]],
          ["99-z.conf", ["bridge"]],
        ]),
      },
    });
    expect(bad.finding).toContain("05-x.conf (invalid: not JSON)");
    const fine = checkCniConfig({
      ...f,
      cni: {
        ...f.cni,
        files: files([
          ["10-flannel.conflist", ["flannel"]],
          ["99-z.conf", ["bridge"]],
        ]),
      },
    });
    expect(fine.status).toBe("ok");
  });
  test("no config of ours is a warning; no directory is ok", () => {
    const f = healthy();
    expect(
      checkCniConfig({ ...f, cni: { ...f.cni, files: files([["10-calico.conflist", ["calico"]]]) } }).status,
    ).toBe("warning");
    expect(checkCniConfig({ ...f, cni: { dir: "/x", exists: false, files: [] } }).status).toBe("ok");
  });
});

describe("checksum offload (the 63-second Service delay)", () => {
  test("kernels before 5.7 with tx-checksum-ip-generic on: a fixable problem", () => {
    const c = problem(checkChecksumOffload({ ...healthy(), kernel: "5.4.0-150-generic" }));
    expect(c.finding).toBe("kernel 5.4.0-150-generic (< 5.7) with flannel.1 tx-checksum-ip-generic on");
    expect(c.fix).toContain("ethtool -K flannel.1 tx-checksum-ip-generic off");
  });
  test("fixed kernels are ok; offload off is ok on any kernel", () => {
    expect(checkChecksumOffload(healthy()).status).toBe("ok");
    expect(
      checkChecksumOffload({
        ...healthy(),
        kernel: "3.10.0",
        offload: fact({ "tx-checksum-ip-generic": "off" }),
      }).status,
    ).toBe("ok");
  });
  test("NAT between nodes (PublicIP ≠ interface address) is a warning on any kernel", () => {
    const f = healthy();
    const u = f.underlay.ok ? f.underlay.value : null;
    expect(checkChecksumOffload({ ...f, underlay: fact({ ...u!, publicIp: 0x0a000001 }) }).status).toBe(
      "warning",
    );
  });
  test("kernel version comparison", () => {
    expect(kernelBefore("5.6.19", [5, 7])).toBe(true);
    expect(kernelBefore("5.7.0", [5, 7])).toBe(false);
    expect(kernelBefore("4.18.0-348.el8", [5, 7])).toBe(true);
    expect(kernelBefore("garbage", [5, 7])).toBe(null);
  });
});

describe("peers", () => {
  test("a peer that does not answer through the overlay is a problem naming it", () => {
    const c = problem(
      checkPeers({
        ...healthy(),
        probes: [
          {
            lease: PEER.key,
            publicIp: "198.18.0.2",
            target: "198.19.2.0",
            ok: false,
            rttMs: null,
            error: null,
          },
        ],
      }),
    );
    expect(c.finding).toBe("1 of 1 peer(s) do not answer through the overlay: 198.19.2.0 (node 198.18.0.2)");
    expect(c.fix).toContain("UDP 8472");
  });
  test("answers carry their round trip", () => {
    expect(checkPeers(healthy()).finding).toBe("198.19.2.0 (lease 198.19.2.0/24, node 198.18.0.2): 0.120 ms");
    expect(checkPeers({ ...healthy(), probes: null }).finding).toContain("not probed");
  });
  test("a window of the peers probed says how many of how many", () => {
    const f = healthy();
    const more = [3, 4, 5].map((i) => lease(`198.19.${i}.0/24`, `198.18.0.${i}`, MAC2));
    const registry = fact({ description: "sqlite:/reg.db", leases: [OWN, PEER, ...more], invalid: [] });
    expect(checkPeers({ ...f, registry }).finding).toStartWith(
      "1 of 4 peers probed this run (a window that moves each run): 198.19.2.0",
    );
  });
  test("the probe window moves along the peers in subnet order and wraps around", () => {
    const peers = [5, 1, 4, 2, 3].map((i) => lease(`198.19.${i}.0/24`, `198.18.0.${i}`, MAC2));
    const third = (round: number) => probeWindow(peers, { max: 2, round }).map((l) => l.key);
    expect(third(0)).toEqual(["198.19.1.0-24", "198.19.2.0-24"]);
    expect(third(1)).toEqual(["198.19.3.0-24", "198.19.4.0-24"]);
    expect(third(2)).toEqual(["198.19.5.0-24", "198.19.1.0-24"]);
    expect(probeWindow(peers, undefined)).toHaveLength(5);
    expect(probeWindow(peers, { max: 10, round: 3 })).toHaveLength(5);
  });
});
