/**
 * Following the pod bridge by events: `ip -o monitor label link neigh` lines (as iproute2
 * 6.1 prints them, captured while a pod was plugged into a bridge, pinged its gateway and
 * was unplugged) become typed events, and only the events that can change a read of the
 * bridge trigger one. Pure, no root.
 */
import { describe, expect, test } from "bun:test";
import { changesView } from "../../src/backend/ebpf-vxlan/bridge.ts";
import type { BridgeView } from "../../src/backend/ebpf-vxlan/endpoints.ts";
import type { Link } from "../../src/net/ip.ts";
import { type MonitorEvent, parseMonitorLine } from "../../src/net/monitor.ts";

const LINES = {
  bridgeUp:
    "[LINK]2: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN group default \\    link/ether c6:a9:d2:c6:c5:62 brd ff:ff:ff:ff:ff:ff",
  vethNew:
    "[LINK]3: vethA@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 06:dd:e4:7e:d3:f0 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
  vethEnslaved:
    "[LINK]3: vethA@if2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue master cni0 state DOWN group default \\    link/ether 06:dd:e4:7e:d3:f0 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
  vethBridgeSide:
    "[LINK]3: vethA@cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master cni0 state UP \\    link/ether 06:dd:e4:7e:d3:f0",
  vethDeleted:
    "[LINK]Deleted 3: vethA@cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master cni0 state UP \\    link/ether 06:dd:e4:7e:d3:f0",
  vethReleased:
    "[LINK]3: vethA@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default \\    link/ether 06:dd:e4:7e:d3:f0 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
  otherLink:
    "[LINK]7: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default \\    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
  fdbLearned: "[NEIGH]dev vethA lladdr 72:29:1a:9d:94:3d REACHABLE ",
  podNeigh: "[NEIGH]198.19.1.5 dev cni0 lladdr 72:29:1a:9d:94:3d STALE ",
  podNeighDeleted: "[NEIGH]Deleted 198.19.1.5 dev cni0 lladdr 72:29:1a:9d:94:3d DELAY ",
  underlayNeigh: "[NEIGH]198.18.0.2 dev eth0 lladdr 02:00:00:00:00:02 REACHABLE ",
  incomplete: "[NEIGH]198.19.1.9 dev cni0  INCOMPLETE ",
  multicast: "[NEIGH]Deleted 224.0.0.22 dev cni0 lladdr 01:00:5e:00:00:16 NOARP ",
  ipv6: "[NEIGH]fe80::1 dev cni0 lladdr 72:29:1a:9d:94:3d STALE ",
  podNeigh6: "[NEIGH]fd00:19:0:1::5 dev cni0 lladdr 72:29:1a:9d:94:3d REACHABLE ",
  multicast6: "[NEIGH]ff02::16 dev cni0 lladdr 33:33:00:00:00:16 NOARP ",
};

const ev = (k: keyof typeof LINES) => parseMonitorLine(LINES[k])!;

describe("ip monitor lines", () => {
  test("links: index, name without the @peer, master, deleted", () => {
    expect(ev("vethNew")).toEqual({
      kind: "link",
      deleted: false,
      ifindex: 3,
      ifname: "vethA",
      master: null,
    });
    expect(ev("vethEnslaved")).toEqual({
      kind: "link",
      deleted: false,
      ifindex: 3,
      ifname: "vethA",
      master: "cni0",
    });
    expect(ev("vethDeleted")).toMatchObject({ kind: "link", deleted: true, ifindex: 3, master: "cni0" });
    expect(ev("bridgeUp")).toMatchObject({ ifindex: 2, ifname: "cni0", master: null });
  });

  test("neighbours: address (none for an FDB entry), device, MAC, state", () => {
    expect(ev("podNeigh")).toEqual({
      kind: "neigh",
      deleted: false,
      dst: "198.19.1.5",
      dev: "cni0",
      lladdr: "72:29:1a:9d:94:3d",
      state: ["STALE"],
    });
    expect(ev("fdbLearned")).toEqual({
      kind: "neigh",
      deleted: false,
      dst: null,
      dev: "vethA",
      lladdr: "72:29:1a:9d:94:3d",
      state: ["REACHABLE"],
    });
    expect(ev("incomplete")).toMatchObject({ dst: "198.19.1.9", lladdr: null, state: ["INCOMPLETE"] });
    expect(ev("podNeighDeleted")).toMatchObject({ deleted: true, dst: "198.19.1.5" });
  });

  test("other objects and shapes are not events", () => {
    for (const l of ["", "[ROUTE]198.19.0.0/16 dev tartan.1", "garbage", "[LINK]not a link line"])
      expect(parseMonitorLine(l)).toBeNull();
  });
});

const link = (ifindex: number, ifname: string, kind?: string): Link => ({
  ifindex,
  ifname,
  mtu: 1450,
  address: "",
  flags: [],
  ...(kind ? { kind } : {}),
});

/** The bridge with vethA (index 3) as a port, and pod 198.19.1.5 known on it. */
const view: BridgeView = {
  bridge: link(2, "cni0", "bridge"),
  ports: [link(3, "vethA", "veth")],
  fdb: [{ mac: "72:29:1a:9d:94:3d", ifname: "vethA" }],
  neighbours: [{ dst: "198.19.1.5", lladdr: "72:29:1a:9d:94:3d", state: ["STALE"] }],
};

describe("which events trigger a read of the bridge", () => {
  const cases: Array<[string, MonitorEvent, BridgeView | null, boolean]> = [
    ["the bridge itself appears", ev("bridgeUp"), null, true],
    ["a veth is enslaved to the bridge", ev("vethEnslaved"), null, true],
    ["a port is deleted", ev("vethDeleted"), view, true],
    ["a port leaves the bridge (no master any more)", ev("vethReleased"), view, true],
    ["a new veth not (yet) on the bridge", ev("vethNew"), { ...view, ports: [] }, false],
    ["a link elsewhere", ev("otherLink"), view, false],
    ["a pod address not seen before", ev("podNeigh"), { ...view, neighbours: [] }, true],
    [
      "a known pod address with a new MAC",
      ev("podNeigh"),
      { ...view, neighbours: [{ dst: "198.19.1.5", lladdr: "02:00:00:00:00:99" }] },
      true,
    ],
    ["a known pod address changing state only", ev("podNeigh"), view, false],
    [
      "a pod address going away (the map keeps it while its veth is a port)",
      ev("podNeighDeleted"),
      view,
      false,
    ],
    ["a neighbour on another device", ev("underlayNeigh"), view, false],
    ["an unresolved neighbour", ev("incomplete"), view, false],
    ["a multicast neighbour", ev("multicast"), view, false],
    ["an IPv6 link-local neighbour", ev("ipv6"), view, false],
    ["a dual-stack pod's IPv6 address not seen before", ev("podNeigh6"), view, true],
    ["an IPv6 multicast neighbour", ev("multicast6"), view, false],
    [
      "a dual-stack pod's IPv6 address already known",
      ev("podNeigh6"),
      { ...view, neighbours: [...view.neighbours, { dst: "fd00:19:0:1::5", lladdr: "72:29:1a:9d:94:3d" }] },
      false,
    ],
    ["an FDB entry the last view has", ev("fdbLearned"), view, false],
    ["a pod's FDB entry learned again after ageing", ev("fdbLearned"), { ...view, fdb: [] }, true],
    [
      "an FDB entry for a MAC no pod address has",
      ev("fdbLearned"),
      { ...view, fdb: [], neighbours: [] },
      false,
    ],
  ];
  for (const [name, e, last, want] of cases)
    test(`${name} → ${want ? "read" : "no read"}`, () => {
      expect(changesView(e, "cni0", last)).toBe(want);
    });
});
