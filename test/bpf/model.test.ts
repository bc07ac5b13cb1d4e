/**
 * The ebpf-vxlan backend's pure part: the VTEP MAC survives restarts, leases become
 * subnet-map entries (or are skipped with a reason), and the endpoint map is derived
 * from the bridge's ports, FDB and neighbours (and brought there with the fewest
 * writes, keeping what the CNI plugin registered). No root needed.
 */
import { describe, expect, test } from "bun:test";
import { endpointsFrom, planEndpoints } from "../../src/backend/ebpf-vxlan/endpoints.ts";
import {
  overlayDeviceName,
  overlayPeerName,
  remoteEntry,
  vtepMacFor,
} from "../../src/backend/ebpf-vxlan/facts.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import type { Lease } from "../../src/lease/lease.ts";
import type { Link } from "../../src/net/ip.ts";

const ip = (s: string) => parseIp4(s)!;

function lease(subnet: string, attrs: Partial<Lease["attrs"]>): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: {
      publicIp: ip("198.18.0.2"),
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "0a:00:00:00:00:02" },
      ...attrs,
    },
    expiresAt: null,
    revision: 1,
  };
}

describe("VTEP MAC", () => {
  test("is the same for the same node, differs across nodes, and is locally administered unicast", () => {
    const a = vtepMacFor("node-a", ip("198.18.0.1"));
    expect(vtepMacFor("node-a", ip("198.18.0.1"))).toBe(a);
    expect(vtepMacFor("node-b", ip("198.18.0.1"))).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = Number.parseInt(a.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
  });

  test("device names fit IFNAMSIZ for every VNI", () => {
    expect(overlayDeviceName(16777215).length).toBeLessThanOrEqual(15);
    expect(overlayPeerName(16777215).length).toBeLessThanOrEqual(15);
  });
});

describe("leases → subnet map", () => {
  test("a vxlan lease with our VNI maps its subnet to its node and VTEP MAC", () => {
    expect(remoteEntry(lease("198.19.2.0/24", {}), 1, 24)).toEqual({
      key: { prefixLen: 24, addr: ip("198.19.2.0") },
      value: { nodeIp: ip("198.18.0.2"), vtepMac: "0a:00:00:00:00:02", flags: 0 },
    });
  });

  test("another VNI or a non-vxlan lease is skipped with the reason", () => {
    expect(
      remoteEntry(lease("198.19.2.0/24", { vxlan: { VNI: 7, VtepMAC: "0a:00:00:00:00:02" } }), 1, 24),
    ).toEqual({
      skip: "VNI 7 differs from ours (1)",
    });
    expect(remoteEntry(lease("198.19.2.0/24", { backendType: "host-gw", vxlan: null }), 1, 24)).toEqual({
      skip: "backend type host-gw is not vxlan",
    });
  });

  test("a prefix length other than SubnetLen is skipped: the subnet map is an exact-match hash", () => {
    expect(remoteEntry(lease("198.19.2.0/25", {}), 1, 24)).toEqual({
      skip: "prefix length /25 differs from the network's SubnetLen /24",
    });
  });
});

describe("bridge → endpoint map", () => {
  const link = (ifname: string, ifindex: number, address: string, kind?: string): Link => ({
    ifname,
    ifindex,
    address,
    mtu: 1450,
    flags: [],
    kind,
  });
  const bridge = link("cni0", 3, "02:bb:00:00:00:01", "bridge");
  const ports = [
    link("veth1", 10, "02:cc:00:00:00:01", "veth"),
    link("veth2", 11, "02:cc:00:00:00:02", "veth"),
  ];
  const fdb = [
    { mac: "02:aa:00:00:00:05", ifname: "veth1", master: "cni0" },
    { mac: "02:aa:00:00:00:06", ifname: "veth2", master: "cni0" },
    { mac: "02:cc:00:00:00:01", ifname: "veth1", flags: ["self"], state: "permanent" },
  ];
  const neighbours = [
    { dst: "198.19.1.5", lladdr: "02:AA:00:00:00:05", state: ["REACHABLE"] },
    { dst: "198.19.1.6", lladdr: "02:aa:00:00:00:06", state: ["STALE"] },
    { dst: "198.19.1.7", state: ["FAILED"] },
    { dst: "10.0.0.9", lladdr: "02:aa:00:00:00:05", state: ["REACHABLE"] },
    { dst: "198.19.1.8", lladdr: "02:aa:00:00:00:99", state: ["REACHABLE"] },
  ];

  test("pod IPs in our subnet whose MAC was learned on a veth port", () => {
    const eps = endpointsFrom({ bridge, ports, fdb, neighbours }, parseCidr("198.19.1.0/24"));
    expect([...eps]).toEqual([
      [ip("198.19.1.5"), { ifindex: 10, podMac: "02:aa:00:00:00:05", gwMac: "02:bb:00:00:00:01" }],
      [ip("198.19.1.6"), { ifindex: 11, podMac: "02:aa:00:00:00:06", gwMac: "02:bb:00:00:00:01" }],
    ]);
  });

  test("no local subnet yet → no endpoints", () => {
    expect(endpointsFrom({ bridge, ports, fdb, neighbours }, null).size).toBe(0);
  });

  const view = { bridge, ports, fdb, neighbours };
  const subnet = parseCidr("198.19.1.0/24");
  const ep = (ifindex: number, podMac: string) => ({ ifindex, podMac, gwMac: "02:bb:00:00:00:01" });

  test("the map is brought to the pods seen: new and changed entries written, unchanged ones not", () => {
    const plan = planEndpoints(
      [
        [ip("198.19.1.5"), ep(10, "02:aa:00:00:00:05")],
        [ip("198.19.1.6"), ep(99, "02:aa:00:00:00:06")],
      ],
      view,
      subnet,
    );
    expect(plan.writes).toEqual([[ip("198.19.1.6"), ep(11, "02:aa:00:00:00:06")]]);
    expect(plan.deletes).toEqual([]);
  });

  test("entries the CNI plugin wrote stay while their veth is a port; pods gone or outside our subnet go", () => {
    const plan = planEndpoints(
      [
        [ip("198.19.1.20"), ep(10, "02:aa:00:00:00:20")], // registered at ADD, not talked yet
        [ip("198.19.1.21"), ep(42, "02:aa:00:00:00:21")], // its veth is gone
        [ip("198.19.2.22"), ep(10, "02:aa:00:00:00:22")], // another subnet (ours changed)
      ],
      view,
      subnet,
    );
    expect(plan.deletes).toEqual([ip("198.19.1.21"), ip("198.19.2.22")]);
  });

  test("before our subnet is known nothing is deleted", () => {
    const plan = planEndpoints([[ip("198.19.1.21"), ep(42, "02:aa:00:00:00:21")]], view, null);
    expect(plan).toEqual({ deletes: [], writes: [] });
  });
});
