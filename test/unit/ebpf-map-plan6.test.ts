/**
 * Dual stack on ebpf-vxlan: the IPv6 map planner (tartan_subnets6/members6 from the
 * leases' IPv6 subnets, PublicIPv6 and BackendV6Data) and the IPv6 endpoint plan from the
 * bridge's neighbours. IPv4-only leases leave the IPv6 maps alone; a lease whose IPv6
 * side goes loses its entry; nodes stay members while they hold a lease. No root.
 */
import { describe, expect, test } from "bun:test";
import { planEndpoints6 } from "../../src/backend/ebpf-vxlan/endpoints.ts";
import { ProgrammedMaps6, planLocalEntry6, planMapWrites6 } from "../../src/backend/ebpf-vxlan/map-plan6.ts";
import { SUBNET_LOCAL } from "../../src/bpf/abi.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";
import type { Lease } from "../../src/lease/lease.ts";
import type { LeaseDiff } from "../../src/lease/reconcile.ts";
import type { Link } from "../../src/net/ip.ts";

const ip6 = (s: string) => parseIp6(s)!;
const scope = { vni: 1, subnet6Len: 64 };
const diff = (d: Partial<LeaseDiff>): LeaseDiff => ({ add: [], update: [], remove: [], ...d });

function lease(
  v4: string,
  v6: string | null,
  node6: string | null,
  mac6 = "0a:00:00:00:00:02",
  vni6 = 1,
): Lease {
  const sn = parseCidr(v4)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    subnet6: v6 === null ? null : parseCidr6(v6)!,
    attrs: {
      publicIp: parseIp4("198.18.0.2")!,
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
      ...(node6 !== null ? { publicIpv6: ip6(node6), vxlan6: { VNI: vni6, VtepMAC: mac6 } } : {}),
    },
    expiresAt: null,
    revision: 1,
  };
}

describe("planMapWrites6", () => {
  test("a dual-stack lease: its node a member first, its IPv6 subnet to PublicIPv6 and the BackendV6Data MAC", () => {
    const state = new ProgrammedMaps6();
    const plan = planMapWrites6(
      state,
      diff({ add: [lease("198.19.2.0/24", "fd00:19:0:2::/64", "fd00:18::2")] }),
      scope,
    );
    expect(plan).toEqual({
      memberWrites: [[ip6("fd00:18::2"), 1]],
      subnetWrites: [
        [
          { prefixLen: 64, addr: ip6("fd00:19:0:2::") },
          { nodeIp6: ip6("fd00:18::2"), vtepMac: "0a:00:00:00:00:02", flags: 0 },
        ],
      ],
      subnetDeletes: [],
      memberDeletes: [],
      skipped: [],
    });
  });

  test("an IPv4-only lease touches nothing; another IPv6 VNI or prefix length is skipped with the reason", () => {
    const state = new ProgrammedMaps6();
    const plan = planMapWrites6(
      state,
      diff({
        add: [
          lease("198.19.3.0/24", null, null),
          lease("198.19.4.0/24", "fd00:19:0:4::/64", "fd00:18::4", "0a:00:00:00:00:04", 2),
          lease("198.19.5.0/24", "fd00:19:0:5::/80", "fd00:18::5"),
        ],
      }),
      scope,
    );
    expect([plan.memberWrites, plan.subnetWrites]).toEqual([[], []]);
    expect(plan.skipped.map((s) => s.reason)).toEqual([
      "IPv6 VNI 2 differs from ours (1)",
      "IPv6 prefix length /80 differs from the network's IPv6SubnetLen /64",
    ]);
  });

  test("two subnets of one node keep it a member until the last goes; an update without its IPv6 side removes the entry", () => {
    const state = new ProgrammedMaps6();
    const a = lease("198.19.2.0/24", "fd00:19:0:2::/64", "fd00:18::2");
    const b = lease("198.19.6.0/24", "fd00:19:0:6::/64", "fd00:18::2");
    state.commit(planMapWrites6(state, diff({ add: [a, b] }), scope));
    expect(state.members.get(ip6("fd00:18::2"))).toBe(2);
    const p1 = planMapWrites6(state, diff({ remove: [a] }), scope);
    expect([p1.memberWrites, p1.memberDeletes, p1.subnetDeletes]).toEqual([
      [[ip6("fd00:18::2"), 1]],
      [],
      [{ prefixLen: 64, addr: ip6("fd00:19:0:2::") }],
    ]);
    state.commit(p1);
    const bGone = { ...b, attrs: { ...b.attrs, publicIpv6: null, vxlan6: null } };
    const p2 = planMapWrites6(state, diff({ update: [bGone] }), scope);
    expect([p2.subnetDeletes, p2.memberDeletes]).toEqual([
      [{ prefixLen: 64, addr: ip6("fd00:19:0:6::") }],
      [ip6("fd00:18::2")],
    ]);
  });

  test("adopted maps: entries of another prefix length are stale, the local one is returned, the first plan prunes the rest", () => {
    const state = new ProgrammedMaps6();
    const v = (n: string, flags = 0) => ({ nodeIp6: ip6(n), vtepMac: "0a:00:00:00:00:09", flags });
    const found = state.adopt(
      [
        [{ prefixLen: 64, addr: ip6("fd00:19:0:1::") }, v("fd00:18::1", SUBNET_LOCAL)],
        [{ prefixLen: 64, addr: ip6("fd00:19:0:9::") }, v("fd00:18::9")],
        [{ prefixLen: 80, addr: ip6("fd00:19:0:8::") }, v("fd00:18::8")],
      ],
      [[ip6("fd00:18::9"), 1]],
      64,
    );
    expect(found).toEqual({
      stale: [{ prefixLen: 80, addr: ip6("fd00:19:0:8::") }],
      local: [{ prefixLen: 64, addr: ip6("fd00:19:0:1::") }],
    });
    const plan = planMapWrites6(state, diff({}), scope);
    expect([plan.subnetDeletes, plan.memberDeletes]).toEqual([
      [{ prefixLen: 64, addr: ip6("fd00:19:0:9::") }],
      [ip6("fd00:18::9")],
    ]);
  });

  test("planLocalEntry6: ours flagged local; a previous subnet and adopted local entries not ours deleted", () => {
    const e = planLocalEntry6(
      parseCidr6("fd00:19:0:3::/64")!,
      [{ prefixLen: 64, addr: ip6("fd00:19:0:7::") }],
      parseCidr6("fd00:19:0:1::/64")!,
      { nodeIp6: ip6("fd00:18::1"), vtepMac: "0a:00:00:00:00:01" },
    );
    expect(e).toEqual({
      deletes: [
        { prefixLen: 64, addr: ip6("fd00:19:0:3::") },
        { prefixLen: 64, addr: ip6("fd00:19:0:7::") },
      ],
      write: [
        { prefixLen: 64, addr: ip6("fd00:19:0:1::") },
        { nodeIp6: ip6("fd00:18::1"), vtepMac: "0a:00:00:00:00:01", flags: SUBNET_LOCAL },
      ],
    });
  });
});

describe("planEndpoints6", () => {
  const link = (ifindex: number, ifname: string, kind: string, address = "02:bb:00:00:00:01") =>
    ({ ifindex, ifname, kind, address, mtu: 1430 }) as unknown as Link;
  const view = {
    bridge: link(5, "cni0", "bridge"),
    ports: [link(7, "veth1", "veth"), link(8, "veth2", "veth")],
    fdb: [
      { mac: "02:aa:00:00:00:05", ifname: "veth1" },
      { mac: "02:aa:00:00:00:06", ifname: "veth2" },
    ],
    neighbours: [
      { dst: "fd00:19:0:1::5", lladdr: "02:aa:00:00:00:05", state: ["REACHABLE"] },
      { dst: "fe80::aa:5", lladdr: "02:aa:00:00:00:05", state: ["STALE"] },
      { dst: "198.19.1.5", lladdr: "02:aa:00:00:00:05", state: ["REACHABLE"] },
      { dst: "fd00:19:0:9::6", lladdr: "02:aa:00:00:00:06", state: ["REACHABLE"] },
    ],
  } as unknown as Parameters<typeof planEndpoints6>[1];

  test("pods' global IPv6 neighbours in our IPv6 subnet, by the port their MAC is on; link-local, IPv4 and other subnets not", () => {
    const plan = planEndpoints6([], view, parseCidr6("fd00:19:0:1::/64")!);
    expect(plan).toEqual({
      deletes: [],
      writes: [
        [ip6("fd00:19:0:1::5"), { ifindex: 7, podMac: "02:aa:00:00:00:05", gwMac: "02:bb:00:00:00:01" }],
      ],
    });
  });

  test("an entry whose pod is gone is deleted; before the subnet is known nothing is", () => {
    const cur = [
      [ip6("fd00:19:0:1::8"), { ifindex: 99, podMac: "02:aa:00:00:00:08", gwMac: "02:bb:00:00:00:01" }],
    ] as const;
    expect(planEndpoints6(cur, view, parseCidr6("fd00:19:0:1::/64")!).deletes).toEqual([
      ip6("fd00:19:0:1::8"),
    ]);
    expect(planEndpoints6(cur, view, null)).toEqual({ deletes: [], writes: [] });
  });
});
