import { describe, expect, test } from "bun:test";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { staleEntries } from "../../src/doctor/checks/leases.ts";
import { judge } from "../../src/doctor/checks.ts";
import { type Facts, fact, type Ipv6Facts, type SubnetMapEntry } from "../../src/doctor/facts.ts";
import { parseNftJson } from "../../src/doctor/nft-rules.ts";
import { MAC1, MAC2, MASQ_NFT } from "./doctor-fixture.ts";
import { healthyDual, MAC6_1, MAC6_2 } from "./doctor-fixture-dual.ts";

const byId = (f: Facts, id: string) => judge(f).find((c) => c.id === id)!;
const with6 = (f: Facts, o: Partial<Ipv6Facts>): Facts => ({ ...f, ipv6: { ...f.ipv6!, ...o } });
const device = (f: Facts) => (f.ipv6!.device.ok ? f.ipv6!.device.value! : null)!;

describe("doctor on a dual-stack vxlan node", () => {
  test("a healthy node passes every check, the IPv6 ones reported before the peers", () => {
    const checks = judge(healthyDual());
    expect(checks.filter((c) => c.status !== "ok")).toEqual([]);
    const ids = checks.map((c) => c.id);
    expect(ids.slice(-5)).toEqual([
      "ipv6-forward",
      "ipv6-datapath",
      "ipv6-routes",
      "ipv6-masquerade",
      "peers",
    ]);
    expect(byId(healthyDual(), "subnet-env").finding).toContain(
      "FLANNEL_IPV6_SUBNET=fd00:19:0:1::1/64 FLANNEL_MTU=1430",
    );
    expect(byId(healthyDual(), "mtu").finding).toBe(
      "eth0 1500 → flannel.1 1430 → cni0 1430 → 1 pod veth(s) 1430",
    );
  });
  test("an IPv4-only node's report has no IPv6 checks at all", () => {
    const f = healthyDual();
    const v4 = { ...f, config: fact(parseNetworkConfig('{"Network":"198.19.0.0/16"}')) };
    expect(judge(v4).some((c) => c.id.startsWith("ipv6-"))).toBe(false);
  });
  test("IPv6 forwarding off is a fixable problem", () => {
    const c = byId(with6(healthyDual(), { forwarding: "0" }), "ipv6-forward");
    expect([c.status, c.finding, c.fixable]).toEqual(["problem", "net.ipv6.conf.all.forwarding=0", true]);
  });
  test("flannel-v6.1 missing needs the agent; down, without its address or at the wrong MTU: fixable", () => {
    const missing = byId(with6(healthyDual(), { device: fact(null) }), "ipv6-datapath");
    expect([missing.status, missing.finding, missing.fixable]).toEqual([
      "problem",
      "the IPv6 vxlan device is missing",
      false,
    ]);
    const f = healthyDual();
    const broken = with6(f, { device: fact({ ...device(f), up: false, mtu: 1450, addrs: [] }) });
    const c = byId(broken, "ipv6-datapath");
    expect(c.status).toBe("problem");
    expect(c.fixable).toBe(true);
    expect(c.details).toEqual([
      "flannel-v6.1 MTU 1450, should be 1430 (eth0 1500 − 70)",
      "flannel-v6.1 is down",
      "flannel-v6.1 lacks its address fd00:19:0:1::/128 (has none)",
    ]);
  });
  test("a device flanneld would not have made is named, with the agent to fix it", () => {
    const f = healthyDual();
    const d = device(f);
    const c = byId(
      with6(f, {
        device: fact({
          ...d,
          mac: "0e:00:00:00:00:99",
          vxlan: { ...d.vxlan, local6: "fd00:18::9", learning: true },
        }),
      }),
      "ipv6-datapath",
    );
    expect(c.fixable).toBe(false);
    expect(c.details).toEqual([
      "flannel-v6.1 has local fd00:18::9, the underlay's IPv6 address is fd00:18::1",
      "flannel-v6.1 has learning on (flanneld and Tartan program the FDB)",
      "flannel-v6.1 has MAC 0e:00:00:00:00:99, our lease announces BackendV6Data VtepMAC 0e:76:01:00:00:01",
    ]);
  });
  test("a dual-stack peer without its IPv6 route, neighbour and FDB entry is named", () => {
    const c = byId(
      with6(healthyDual(), { routes: fact([]), neighbours: fact([]), fdb: fact([]) }),
      "ipv6-routes",
    );
    expect(c.status).toBe("problem");
    expect(c.fixable).toBe(true);
    expect(c.details).toEqual([
      "fd00:19:0:2::/64: route fd00:19:0:2::/64 via fd00:19:0:2:: dev flannel-v6.1 missing",
      "fd00:19:0:2::/64: neighbour fd00:19:0:2:: lladdr 0e:76:01:00:00:02 dev flannel-v6.1 missing",
      "fd00:19:0:2::/64: fdb 0e:76:01:00:00:02 dst fd00:18::2 dev flannel-v6.1 missing",
    ]);
  });
  test("--ip-masq without table ip6 tartan is a problem; the table without --ip-masq a warning", () => {
    const f = healthyDual();
    const noTable = { ...f, nft: fact(parseNftJson(MASQ_NFT)) };
    const c = byId(noTable, "ipv6-masquerade");
    expect([c.status, c.finding]).toEqual(["problem", "table ip6 tartan is missing though --ip-masq is on"]);
    const off = { ...f, settings: { ...f.settings, ipMasq: false } };
    expect(byId(off, "ipv6-masquerade").status).toBe("warning");
  });
  test("subnet.env without its IPv6 pair, or with another IPv6 subnet, is a fixable problem", () => {
    const f = healthyDual();
    const env = f.subnetEnv.kind === "ok" ? f.subnetEnv.env : null;
    const v4only = {
      ...f,
      subnetEnv: { kind: "ok" as const, env: { ...env!, network6: null, subnet6: null } },
    };
    const c = byId(v4only, "subnet-env");
    expect([c.status, c.finding, c.fixable]).toEqual([
      "problem",
      "/run/flannel/subnet.env says FLANNEL_IPV6_NETWORK=(none), the network config says fd00:19::/56",
      true,
    ]);
    const other = {
      ...f,
      subnetEnv: {
        kind: "ok" as const,
        env: { ...env!, subnet6: { ip: env!.subnet6!.ip + (1n << 64n), len: 64 } },
      },
    };
    expect(byId(other, "subnet-env").finding).toBe(
      "/run/flannel/subnet.env says FLANNEL_IPV6_SUBNET=fd00:19:0:2::1/64, the lease's IPv6 subnet is fd00:19:0:1::/64",
    );
    const wrongMtu = { ...f, subnetEnv: { kind: "ok" as const, env: { ...env!, mtu: 1450 } } };
    expect(byId(wrongMtu, "subnet-env").finding).toBe(
      "/run/flannel/subnet.env says FLANNEL_MTU=1450, the overlay needs 1430",
    );
  });
});

describe("doctor on a dual-stack ebpf-vxlan node: the IPv6 maps against the leases", () => {
  const v4 = [
    { subnet: "198.19.1.0/24", nodeIp: "198.18.0.1", vtepMac: MAC1, local: true },
    { subnet: "198.19.2.0/24", nodeIp: "198.18.0.2", vtepMac: MAC2, local: false },
  ];
  const own6 = { subnet: "fd00:19:0:1::/64", nodeIp: "fd00:18::1", vtepMac: MAC6_1, local: true };
  const peer6 = { subnet: "fd00:19:0:2::/64", nodeIp: "fd00:18::2", vtepMac: MAC6_2, local: false };
  const withMaps6 = (subnets6: SubnetMapEntry[], members6: Record<string, number>): Facts => {
    const f = healthyDual();
    return {
      ...f,
      settings: { ...f.settings, backend: "ebpf-vxlan" },
      bpf: fact({
        pins: [],
        attachments: [],
        pinnedProgIds: {},
        subnets: fact(v4),
        members: fact({ "198.18.0.2": 1 }),
        subnets6: fact(subnets6),
        members6: fact(members6),
      }),
    };
  };
  const mapEntries = (f: Facts) => staleEntries(f).filter((s) => s.kind === "map");

  test("every IPv6 entry a lease stands behind: nothing stale", () => {
    const f = withMaps6([own6, peer6], { "fd00:18::2": 1 });
    expect(mapEntries(f)).toEqual([]);
    expect(byId(f, "stale-entries").status).toBe("ok");
  });
  test("an IPv6 subnet and a member no lease stands behind are stale, left to an agent restart", () => {
    const gone = { subnet: "fd00:19:0:9::/64", nodeIp: "fd00:18::9", vtepMac: MAC6_2, local: false };
    const c = byId(withMaps6([own6, peer6, gone], { "fd00:18::2": 1, "fd00:18::9": 1 }), "stale-entries");
    expect([c.status, c.fixable]).toEqual(["problem", false]);
    expect(c.details).toEqual([
      "map tartan_subnets6 fd00:19:0:9::/64 (node fd00:18::9)",
      "map tartan_members6 fd00:18::9",
    ]);
    expect(c.fix).toContain("restart the agent");
  });
  test("on an IPv4-only network every remote IPv6 entry is stale", () => {
    const f = withMaps6([own6, peer6], { "fd00:18::2": 1 });
    const v4only = { ...f, config: fact(parseNetworkConfig('{"Network":"198.19.0.0/16"}')) };
    expect(mapEntries(v4only)).toEqual([
      { kind: "map", spec: "tartan_subnets6 fd00:19:0:2::/64 (node fd00:18::2)" },
      { kind: "map", spec: "tartan_members6 fd00:18::2" },
    ]);
  });
});
