/**
 * Dual stack through the agent's parts, without root: taking a lease from a registry
 * (a new pair, IPv6 turned on, a reservation that does not fit, two nodes racing for one
 * subnet with different IPv6 halves), the underlay's IPv6 address, the CNI plugin's two
 * ranges, and what status and /metrics show.
 */
import { describe, expect, test } from "bun:test";
import { formatStatus } from "../../src/cli/status.ts";
import { parseNetConf } from "../../src/cni/conf.ts";
import { buildDelegateConf } from "../../src/cni/delegate-conf.ts";
import { parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6, parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { parseSubnetKey } from "../../src/config/subnet-key.ts";
import { encodeLeaseValue, type LeaseAttrs } from "../../src/lease/lease.ts";
import { createRegistryLeaseSource, ReservationMismatchError } from "../../src/lease/registry-source.ts";
import { silentLogger } from "../../src/log.ts";
import { parseIpAddrJson, selectInterface } from "../../src/net/iface.ts";
import type { RegistryRecord } from "../../src/registry/registry.ts";
import { type AgentStatus, formatMetrics, newMetrics } from "../../src/status/status.ts";
import { MemoryRegistry } from "../helpers/memory-registry.ts";

const config = parseNetworkConfig(
  JSON.stringify({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "fd00:19::/56" }),
);
const ME: LeaseAttrs = {
  publicIp: parseIp4("198.18.0.1")!,
  publicIpv6: parseIp6("fd00:18::1")!,
  backendType: "vxlan",
  vxlan: { VNI: 1, VtepMAC: "0e:7a:01:12:00:01" },
  vxlan6: { VNI: 1, VtepMAC: "0e:76:01:00:00:01" },
};
const source = (registry: MemoryRegistry) =>
  createRegistryLeaseSource({
    registry,
    ttlMs: 60_000,
    netConfigPath: null,
    stateFile: "/state/n1.lease",
    log: silentLogger,
  });
const memory = (owned: string[] = [], previous: string | null = null) => {
  const pair = previous ? parseSubnetKey(previous) : null;
  return { previous: pair?.v4 ?? null, previous6: pair?.v6 ?? null, owned: new Set(owned) };
};

describe("taking a dual-stack lease from a registry", () => {
  test("a new node gets a key with both subnets and flanneld's dual-stack JSON", async () => {
    const reg = new MemoryRegistry();
    const lease = await source(reg).acquire({ config, attrs: ME, memory: memory() });
    expect(lease.subnet6).toBeDefined();
    expect([...reg.records.keys()]).toEqual([lease.key]);
    expect(lease.key).toMatch(/^198\.19\.\d+\.0-24&fd00:19:0:[0-9a-f]+::-64$/);
    expect(reg.records.get(lease.key)!.value).toBe(
      '{"PublicIP":"198.18.0.1","PublicIPv6":"fd00:18::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:7a:01:12:00:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:76:01:00:00:01"}}',
    );
  });
  test("after a reboot the state file's key is taken back, both halves", async () => {
    const reg = new MemoryRegistry();
    const key = "198.19.77.0-24&fd00:19:0:77::-64";
    const lease = await source(reg).acquire({ config, attrs: ME, memory: memory([key], key) });
    expect(lease.key).toBe(key);
  });
  test("IPv6 turned on: our IPv4-only lease is replaced by one with the same IPv4 subnet", async () => {
    const reg = new MemoryRegistry();
    const v4 = { publicIp: ME.publicIp, backendType: "vxlan", vxlan: ME.vxlan };
    reg.put("198.19.9.0-24", encodeLeaseValue(v4), 60_000);
    const lease = await source(reg).acquire({ config, attrs: ME, memory: memory(["198.19.9.0-24"]) });
    expect(lease.key.startsWith("198.19.9.0-24&fd00:19:0:")).toBe(true);
    expect([...reg.records.keys()]).toEqual([lease.key]);
  });
  test("a reservation of ours that lacks the IPv6 half is never rewritten: refused, saying how to fix it", async () => {
    const reg = new MemoryRegistry();
    reg.put(
      "198.19.9.0-24",
      encodeLeaseValue({ publicIp: ME.publicIp, backendType: "vxlan", vxlan: ME.vxlan }),
      null,
    );
    const err = await source(reg)
      .acquire({ config, attrs: ME, memory: memory(["198.19.9.0-24"]) })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ReservationMismatchError);
    expect((err as Error).message).toMatch(
      /^the reservation 198\.19\.9\.0-24 carries our public IP, but the network config is dual stack \(EnableIPv6\) and it holds no IPv6 subnet in IPv6Network; reservations are the operator's/,
    );
    expect([...reg.records.keys()]).toEqual(["198.19.9.0-24"]);
  });
  test("a dual-stack reservation of ours is reused as it is", async () => {
    const reg = new MemoryRegistry();
    reg.put("198.19.9.0-24&fd00:19:0:9::-64", encodeLeaseValue(ME), null);
    const lease = await source(reg).acquire({
      config,
      attrs: ME,
      memory: memory(["198.19.9.0-24&fd00:19:0:9::-64"]),
    });
    expect([lease.key, lease.expiresAt]).toEqual(["198.19.9.0-24&fd00:19:0:9::-64", null]);
  });
  test("two nodes taking one IPv4 subnet with different IPv6 halves at once: the later one yields", async () => {
    // another node creates its lease between our list and our create: both keys are new
    class Racing extends MemoryRegistry {
      raced = false;
      override async create(
        key: string,
        value: string,
        ttlMs: number | null,
      ): Promise<RegistryRecord | null> {
        if (!this.raced) {
          this.raced = true;
          const v4 = parseSubnetKey(key)!.v4;
          const theirs = `${key.split("&")[0]}&fd00:19:0:ee::-64`;
          expect(v4.len).toBe(24);
          this.put(
            theirs,
            encodeLeaseValue({
              ...ME,
              publicIp: parseIp4("198.18.0.2")!,
              publicIpv6: parseIp6("fd00:18::2")!,
            }),
            ttlMs,
          );
        }
        return super.create(key, value, ttlMs);
      }
    }
    const reg = new Racing();
    const prev = "198.19.5.0-24&fd00:19:0:5::-64";
    const lease = await source(reg).acquire({ config, attrs: ME, memory: memory([], prev) });
    expect(reg.raced).toBe(true);
    // theirs stays; ours moved to another IPv4 subnet
    expect(reg.records.has("198.19.5.0-24&fd00:19:0:ee::-64")).toBe(true);
    expect(lease.key.startsWith("198.19.5.0-24")).toBe(false);
    expect([...reg.records.keys()].sort()).toEqual(["198.19.5.0-24&fd00:19:0:ee::-64", lease.key].sort());
  });
});

describe("the underlay's IPv6 address", () => {
  const json = JSON.stringify([
    {
      ifindex: 2,
      ifname: "eth0",
      mtu: 1500,
      address: "02:00:00:00:00:01",
      flags: ["UP"],
      addr_info: [
        { family: "inet", local: "198.18.0.1", scope: "global" },
        { family: "inet6", local: "fd00:18::9", scope: "global", tentative: true },
        { family: "inet6", local: "fd00:18::8", scope: "global", dadfailed: true, tentative: true },
        { family: "inet6", local: "fd00:18::7", scope: "global", deprecated: true },
        { family: "inet6", local: "fd00:18::1", scope: "global" },
        { family: "inet6", local: "fe80::1", scope: "link" },
      ],
    },
    {
      ifindex: 3,
      ifname: "eth1",
      mtu: 1500,
      flags: ["UP"],
      addr_info: [
        { family: "inet", local: "198.18.1.1", scope: "global" },
        { family: "inet6", local: "fd00:18:1::1", scope: "global" },
      ],
    },
  ]);
  const ifaces = parseIpAddrJson(json);
  test("global, not failed or deprecated, settled ones first; link-local never", () => {
    expect(ifaces[0]!.addrs6!.map(formatIp6)).toEqual(["fd00:18::1", "fd00:18::9"]);
  });
  const pick = (o: { names?: string[]; regexes?: string[]; routeDev?: string }) =>
    selectInterface({
      ifaces,
      names: o.names ?? [],
      regexes: o.regexes ?? [],
      routeDev: o.routeDev ?? null,
      routeWhy: "the default route",
    });
  test("--iface by name takes its first IPv6 address; by an IPv6 address, that one", () => {
    expect(formatIp6(pick({ names: ["eth0"] }).ifaceIp6!)).toBe("fd00:18::1");
    const byV6 = pick({ names: ["fd00:18::9"] });
    expect([byV6.iface.name, formatIp6(byV6.ifaceIp6!)]).toEqual(["eth0", "fd00:18::9"]);
    expect(pick({ names: ["fd00:18:1::1"] }).iface.name).toBe("eth1");
  });
  test("--iface-regex matches IPv6 addresses too", () => {
    const r = pick({ regexes: ["^fd00:18:1:"] });
    expect([r.iface.name, formatIp6(r.ifaceIp6!)]).toEqual(["eth1", "fd00:18:1::1"]);
  });
  test("the default route's interface brings its IPv6 address", () => {
    expect(formatIp6(pick({ routeDev: "eth1" }).ifaceIp6!)).toBe("fd00:18:1::1");
  });
});

describe("the CNI plugin on a dual-stack node (flannel's plugin's delegate)", () => {
  test("host-local gets both ranges, the routes both networks", () => {
    const conf = parseNetConf(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "cbr0",
        type: "tartan",
        delegate: { isDefaultGateway: true },
      }),
    );
    const d = buildDelegateConf(conf, {
      network: parseCidr("198.19.0.0/16")!,
      subnet: parseCidr("198.19.5.0/24")!,
      network6: parseCidr6("fd00:19::/56")!,
      subnet6: parseCidr6("fd00:19:0:5::/64")!,
      mtu: 1430,
      ipMasq: true,
    });
    expect(d.ipam).toEqual({
      type: "host-local",
      ranges: [[{ subnet: "198.19.5.0/24" }], [{ subnet: "fd00:19:0:5::/64" }]],
      routes: [{ dst: "198.19.0.0/16" }, { dst: "fd00:19::/56" }],
    });
    expect(d.mtu).toBe(1430);
  });
});

describe("status and /metrics on a dual-stack node", () => {
  const s: AgentStatus = {
    node: "n1",
    version: "0.1.0 (test)",
    backend: "vxlan",
    startedAt: "2026-01-01T00:00:00.000Z",
    network: "198.19.0.0/16",
    network6: "fd00:19::/56",
    registry: { description: "memory:test", state: "ok", lastError: null, revision: 4 },
    lease: {
      subnet: "198.19.5.0/24",
      subnet6: "fd00:19:0:5::/64",
      publicIp: "198.18.0.1",
      publicIpv6: "fd00:18::1",
      expiresAt: null,
      renewAt: null,
    },
    subnetFile: { path: "/run/flannel/subnet.env", written: true },
    leases: [
      {
        subnet: "198.19.5.0/24",
        subnet6: "fd00:19:0:5::/64",
        publicIp: "198.18.0.1",
        publicIpv6: "fd00:18::1",
        backendType: "vxlan",
        vni: 1,
        vtepMac: "0e:7a:01:12:00:01",
        expiresAt: null,
        own: true,
        programmed: true,
      },
      {
        subnet: "198.19.6.0/24",
        publicIp: "198.18.0.2",
        backendType: "vxlan",
        vni: 1,
        vtepMac: "0e:7a:01:12:00:02",
        expiresAt: null,
        own: false,
        programmed: true,
      },
    ],
    counts: { leases: 2, programmed: 1, leases6: 1 },
    health: { ok: true, reasons: [] },
    ready: { ok: true, reasons: [] },
    counters: {},
    metrics: newMetrics(),
  };
  test("tartan status shows both families, an IPv4-only peer with dashes", () => {
    const text = formatStatus(s);
    expect(text).toContain("network     198.19.0.0/16 and fd00:19::/56");
    expect(text).toContain("lease       198.19.5.0/24 via 198.18.0.1 and fd00:19:0:5::/64 via fd00:18::1");
    const rows = text.split("\n");
    expect(rows.find((l) => l.startsWith("SUBNET"))).toMatch(
      /^SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+BACKEND/,
    );
    expect(rows.find((l) => l.startsWith("198.19.6.0/24"))).toMatch(
      /^198\.19\.6\.0\/24\s+-\s+198\.18\.0\.2\s+-\s+vxlan/,
    );
  });
  test("an IPv4-only status keeps its table", () => {
    const v4 = { ...s, network6: undefined, leases: [s.leases[1]!] };
    expect(
      formatStatus(v4)
        .split("\n")
        .find((l) => l.startsWith("SUBNET")),
    ).toMatch(/^SUBNET\s+PUBLIC IP\s+BACKEND/);
  });
  test("/metrics says the network is dual stack and how many leases have an IPv6 subnet", () => {
    const m = formatMetrics(s);
    expect(m).toContain("\ntartan_ipv6_enabled 1\n");
    expect(m).toContain("\ntartan_leases_ipv6 1\n");
    const v4 = formatMetrics({ ...s, network6: undefined, counts: { leases: 2, programmed: 1 } });
    expect(v4).toContain("\ntartan_ipv6_enabled 0\n");
    expect(v4).toContain("\ntartan_leases_ipv6 0\n");
  });
  test("the IPv6 subnet of a status is a CIDR status readers can parse", () => {
    expect(formatCidr6(parseCidr6(s.lease!.subnet6!)!)).toBe("fd00:19:0:5::/64");
  });
});
