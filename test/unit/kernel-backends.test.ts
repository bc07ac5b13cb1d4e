import { describe, expect, test } from "bun:test";
import { isVxlanPeer, stableVtepMac } from "../../src/backend/vxlan/facts.ts";
import { sortDiff } from "../../src/backend/vxlan/index.ts";
import { addLines, removeLines } from "../../src/backend/vxlan/plan.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { masqRuleset } from "../../src/net/masq.ts";
import { parseProcRoutes, routeLookup } from "../../src/net/routes.ts";

function lease(
  subnet: string,
  publicIp: string,
  mac = "0e:7a:01:12:00:02",
  backendType = "vxlan",
  vni = 1,
): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: {
      publicIp: parseIp4(publicIp)!,
      backendType,
      vxlan: backendType === "vxlan" ? { VNI: vni, VtepMAC: mac } : null,
    },
    expiresAt: null,
    revision: 1,
  };
}

describe("vxlan backend plan (flanneld's per-lease entries)", () => {
  const p = { device: "flannel.1", extIface: "eth0", direct: () => false };
  test("neighbour, FDB and onlink route per remote lease", () => {
    expect(addLines([lease("198.19.7.0/24", "198.18.0.2")], p)).toEqual({
      ip: [
        "neigh replace 198.19.7.0 lladdr 0e:7a:01:12:00:02 dev flannel.1 nud permanent",
        "route replace 198.19.7.0/24 via 198.19.7.0 dev flannel.1 onlink",
      ],
      bridge: ["fdb replace 0e:7a:01:12:00:02 dev flannel.1 dst 198.18.0.2 self permanent"],
    });
  });
  test("removal deletes all three", () => {
    expect(removeLines([lease("198.19.7.0/24", "198.18.0.2")], p)).toEqual({
      ip: ["route del 198.19.7.0/24 dev flannel.1", "neigh del 198.19.7.0 dev flannel.1"],
      bridge: ["fdb del 0e:7a:01:12:00:02 dev flannel.1 dst 198.18.0.2 self"],
    });
  });
  test("DirectRouting to a peer on our L2 is a plain route via its PublicIP", () => {
    const d = { ...p, direct: () => true };
    expect(addLines([lease("198.19.7.0/24", "198.18.0.2")], d)).toEqual({
      ip: ["route replace 198.19.7.0/24 via 198.18.0.2 dev eth0"],
      bridge: [],
    });
    expect(removeLines([lease("198.19.7.0/24", "198.18.0.2")], d)).toEqual({
      ip: ["route del 198.19.7.0/24 via 198.18.0.2 dev eth0"],
      bridge: [],
    });
  });
  test("only vxlan leases with our VNI are peers", () => {
    expect(isVxlanPeer(lease("198.19.7.0/24", "198.18.0.2"), 1)).toBe(true);
    expect(isVxlanPeer(lease("198.19.7.0/24", "198.18.0.2", undefined, "vxlan", 2), 1)).toBe(false);
    expect(isVxlanPeer(lease("198.19.7.0/24", "198.18.0.2", undefined, "host-gw"), 1)).toBe(false);
  });
  test("the VTEP MAC is stable, unicast and locally administered", () => {
    const mac = stableVtepMac(parseIp4("198.18.0.2")!, 1);
    expect(mac).toBe(stableVtepMac(parseIp4("198.18.0.2")!, 1));
    expect(mac).not.toBe(stableVtepMac(parseIp4("198.18.0.3")!, 1));
    const first = Number.parseInt(mac.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
  });
});

describe("route lookup (DirectRouting, host-gw reachability)", () => {
  const rl = routeLookup([
    { dst: "default", gateway: "198.18.0.254", dev: "eth0" },
    { dst: "198.18.0.0/24", dev: "eth0", protocol: "kernel", scope: "link" },
    { dst: "198.18.9.0/24", gateway: "198.18.0.254", dev: "eth0" },
  ]);
  test("longest prefix wins; on-link means direct", () => {
    expect(rl.isDirect(parseIp4("198.18.0.7")!)).toBe(true);
    expect(rl.isDirect(parseIp4("198.18.9.7")!)).toBe(false);
    expect(rl.isDirect(parseIp4("198.18.50.1")!)).toBe(false);
    expect(rl.lookup(parseIp4("198.18.9.7")!)?.gateway).toBe("198.18.0.254");
  });
});

describe("/proc/net/route (the watchdog's route check, no process spawned)", () => {
  test("devices, destinations and prefix lengths of the main table", () => {
    const text = [
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
      "eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0",
      "tartan.1\t000013C6\t000013C6\t0007\t0\t0\t0\t0000FFFF\t0\t0\t0",
      "cni0\t000213C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
      "",
    ].join("\n");
    expect(parseProcRoutes(text)).toEqual([
      { dev: "eth0", dst: 0, len: 0 },
      { dev: "tartan.1", dst: parseIp4("198.19.0.0")!, len: 16 },
      { dev: "cni0", dst: parseIp4("198.19.2.0")!, len: 24 },
    ]);
  });
});

describe("ip-masq ruleset (flanneld's semantics in nftables)", () => {
  test("pod↔cluster untouched, pods→outside and host→cluster masqueraded, fully random", () => {
    const r = masqRuleset(parseCidr("198.19.0.0/16")!, parseCidr("198.19.5.0/24")!);
    expect(r).toContain("table ip tartan {");
    expect(r).toContain("type nat hook postrouting priority srcnat - 1; policy accept;");
    const rules = r
      .split("\n")
      .filter((l) => /return|masquerade/.test(l))
      .map((l) => l.trim().replace(/ comment ".*"$/, ""));
    expect(rules).toEqual([
      "meta mark & 0x4000 == 0x4000 return",
      "ip saddr 198.19.0.0/16 ip daddr 198.19.0.0/16 return",
      "ip saddr != 198.19.0.0/16 ip daddr 198.19.5.0/24 return",
      "ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
      "ip saddr != 198.19.0.0/16 ip daddr 198.19.0.0/16 masquerade fully-random",
    ]);
  });
});

describe("vxlan backend: what a lease diff means for the entries it programmed (sortDiff)", () => {
  const a = lease("198.19.1.0/24", "198.18.0.1");
  const b = lease("198.19.2.0/24", "198.18.0.2");
  const mine = new Map([[a.key, a]]);

  test("a removed lease removes exactly what was programmed for it; an unknown one nothing", () => {
    const r = sortDiff({ add: [], update: [], remove: [lease("198.19.1.0/24", "198.18.0.9"), b] }, mine, 1);
    expect(r.stale).toEqual([a]);
    expect(r.add).toEqual([]);
    expect(r.foreign).toEqual([]);
  });

  test("an updated lease removes the old entries (MAC or path may change) and adds the new", () => {
    const a2 = lease("198.19.1.0/24", "198.18.0.1", "0e:7a:01:12:00:09");
    const r = sortDiff({ add: [b], update: [a2], remove: [] }, mine, 1);
    expect(r.stale).toEqual([a]);
    expect(r.add).toEqual([b, a2]);
  });

  test("leases of another backend or VNI are not programmed, and reported only when new to us", () => {
    const gw = lease("198.19.3.0/24", "198.18.0.3", "", "host-gw");
    const vni2 = lease("198.19.4.0/24", "198.18.0.4", "0e:7a:01:12:00:04", "vxlan", 2);
    const aNowGw = lease("198.19.1.0/24", "198.18.0.1", "", "host-gw");
    const r = sortDiff({ add: [gw, vni2], update: [aNowGw], remove: [] }, mine, 1);
    expect(r.add).toEqual([]);
    expect(r.foreign).toEqual([gw, vni2]);
    // ours before: its old entries go, and it is no news to report
    expect(r.stale).toEqual([a]);
  });
});
