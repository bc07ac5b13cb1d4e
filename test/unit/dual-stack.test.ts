/**
 * Dual stack, the pure parts: flannel's lease JSON and keys with IPv6, decoding every kind
 * of lease a mixed cluster holds, allocation of the IPv6 half, what a node remembers,
 * subnet.env and docker-opts, and the kernel entries the backends derive.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostGwRoute6 } from "../../src/backend/host-gw/facts.ts";
import { dualStackMtu, isVxlan6Peer, stableVtepMac, stableVtepMac6 } from "../../src/backend/vxlan/facts.ts";

import { addLines, entriesOf, removeLines } from "../../src/backend/vxlan/plan.ts";
import { cidrToKey, formatCidr, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { type Cidr6, formatCidr6, parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import {
  formatDockerOpts,
  formatSubnetEnv,
  parseSubnetEnv,
  readSubnetEnv,
  type SubnetEnv,
  writeSubnetEnv,
} from "../../src/config/subnet-env.ts";
import { subnetKey } from "../../src/config/subnet-key.ts";
import { chooseSubnet, fitsIpv6 } from "../../src/lease/allocate.ts";
import {
  decodeLeaseRecord,
  encodeLeaseValue,
  type Lease,
  overlapping,
  sameAttrs,
} from "../../src/lease/lease.ts";
import { nodeMemory, readStateFile, remembers, writeStateFile } from "../../src/lease/memory.ts";
import { main } from "../../src/main.ts";
import { masqRuleset6 } from "../../src/net/masq.ts";
import { routeLookup6 } from "../../src/net/routes.ts";

const ip = (s: string) => parseIp4(s)!;
const ip6 = (s: string) => parseIp6(s)!;
const c6 = (s: string) => parseCidr6(s)!;
const dualCfg = parseNetworkConfig(
  JSON.stringify({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "fd00:19::/56" }),
);
const v4Cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }));

function lease(subnet: string, publicIp: string, subnet6: string | null, publicIpv6: string | null): Lease {
  const sn = parseCidr(subnet)!;
  const sn6 = subnet6 ? c6(subnet6) : null;
  const attrs = {
    publicIp: ip(publicIp),
    backendType: "vxlan",
    vxlan: { VNI: 1, VtepMAC: "0e:7a:01:12:00:02" },
    ...(publicIpv6 ? { publicIpv6: ip6(publicIpv6), vxlan6: { VNI: 1, VtepMAC: "0e:76:01:00:00:02" } } : {}),
  };
  return sn6
    ? { subnet: sn, key: subnetKey(sn, sn6), subnet6: sn6, attrs, expiresAt: 1, revision: 1 }
    : { subnet: sn, key: cidrToKey(sn), attrs, expiresAt: 1, revision: 1 };
}

describe("dual-stack lease JSON, byte for byte as flanneld's (Go's field order)", () => {
  test("vxlan: PublicIPv6 after PublicIP, BackendV6Data last", () => {
    const v = encodeLeaseValue({
      publicIp: ip("192.168.1.10"),
      publicIpv6: ip6("2001:db8::10"),
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "0e:7a:01:12:00:02" },
      vxlan6: { VNI: 1, VtepMAC: "0e:76:01:00:00:02" },
    });
    expect(v).toBe(
      '{"PublicIP":"192.168.1.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:7a:01:12:00:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:76:01:00:00:02"}}',
    );
  });
  test("host-gw: no backend data in either family", () => {
    expect(
      encodeLeaseValue({
        publicIp: ip("198.18.0.2"),
        publicIpv6: ip6("fd00:18::2"),
        backendType: "host-gw",
        vxlan: null,
        vxlan6: null,
      }),
    ).toBe('{"PublicIP":"198.18.0.2","PublicIPv6":"fd00:18::2","BackendType":"host-gw"}');
  });
  test("an IPv4-only lease stays as Tartan has always written it", () => {
    const v4 = {
      publicIp: ip("198.18.0.2"),
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "0e:7a:01:12:00:02" },
    };
    const want =
      '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:7a:01:12:00:02"}}';
    expect(encodeLeaseValue(v4)).toBe(want);
    expect(encodeLeaseValue({ ...v4, publicIpv6: null, vxlan6: null })).toBe(want);
  });
});

describe("decoding every lease a mixed cluster holds", () => {
  const rec = (key: string, value: string) => ({ key, value, expiresAt: 9, revision: 3 });
  test("a flanneld dual-stack lease: both subnets from the key, both addresses and MACs from the value", () => {
    const d = decodeLeaseRecord(
      rec(
        "198.19.5.0-24&fd00:19:0:5::-64",
        '{"PublicIP":"198.18.0.5","PublicIPv6":"fd00:18::5","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"AA:BB:CC:00:00:05"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:00:06:05"}}',
      ),
      dualCfg,
    );
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.lease.key).toBe("198.19.5.0-24&fd00:19:0:5::-64");
    expect(formatCidr(d.lease.subnet)).toBe("198.19.5.0/24");
    expect(formatCidr6(d.lease.subnet6!)).toBe("fd00:19:0:5::/64");
    expect(d.lease.attrs.publicIpv6).toBe(ip6("fd00:18::5"));
    expect(d.lease.attrs.vxlan).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:00:00:05" });
    expect(d.lease.attrs.vxlan6).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:00:06:05" });
    expect(isVxlan6Peer(d.lease, 1)).toBe(true);
  });
  test('flanneld ≥ 0.15 writes "PublicIPv6":null in IPv4-only leases: the same lease as without it', () => {
    const with0 = decodeLeaseRecord(
      rec(
        "198.19.6.0-24",
        '{"PublicIP":"198.18.0.6","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}}',
      ),
      dualCfg,
    );
    const without = decodeLeaseRecord(
      rec(
        "198.19.6.0-24",
        '{"PublicIP":"198.18.0.6","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}}',
      ),
      dualCfg,
    );
    expect(with0.ok && without.ok).toBe(true);
    if (!with0.ok || !without.ok) return;
    expect(with0.lease).toEqual(without.lease);
    expect(with0.lease.subnet6).toBeUndefined();
    expect(isVxlan6Peer(with0.lease, 1)).toBe(false);
  });
  test("flannel's alloc backend in a dual-stack network: an IPv6 subnet but no PublicIPv6", () => {
    const d = decodeLeaseRecord(
      rec("198.19.7.0-24&fd00:19:0:7::-64", '{"PublicIP":"198.18.0.7","PublicIPv6":null}'),
      dualCfg,
    );
    expect(d.ok && formatCidr6(d.lease.subnet6!)).toBe("fd00:19:0:7::/64");
    expect(d.ok && (d.lease.attrs.publicIpv6 ?? null)).toBeNull();
  });
  test("an IPv4-only node keeps a dual-stack peer's IPv6 subnet as it is (and programs IPv4 only)", () => {
    const d = decodeLeaseRecord(
      rec(
        "198.19.5.0-24&fd99::-64",
        '{"PublicIP":"198.18.0.5","PublicIPv6":"fd00:18::5","BackendType":"host-gw"}',
      ),
      v4Cfg,
    );
    expect(d.ok && formatCidr6(d.lease.subnet6!)).toBe("fd99::/64");
  });
  test("sameAttrs sees a changed IPv6 side", () => {
    const a = lease("198.19.5.0/24", "198.18.0.5", "fd00:19:0:5::/64", "fd00:18::5");
    const b = { ...a.attrs, publicIpv6: ip6("fd00:18::6") };
    expect(sameAttrs(a.attrs, a.attrs)).toBe(true);
    expect(sameAttrs(a.attrs, b)).toBe(false);
  });
  const bad: [string, string, string, RegExp][] = [
    [
      "an IPv6 subnet outside IPv6Network",
      "198.19.5.0-24&fd01::-64",
      '{"PublicIP":"198.18.0.5"}',
      /IPv6 subnet of .* is not a \/64 inside the IPv6Network/,
    ],
    [
      "an IPv6 subnet of another length",
      "198.19.5.0-24&fd00:19:0:5::-72",
      '{"PublicIP":"198.18.0.5"}',
      /not a \/64 inside/,
    ],
    [
      "a key in another spelling",
      "198.19.5.0-24&fd00:19:0:5:0::-64",
      '{"PublicIP":"198.18.0.5"}',
      /is not a subnet like/,
    ],
    [
      "PublicIPv6 not a string",
      "198.19.5.0-24&fd00:19:0:5::-64",
      '{"PublicIP":"198.18.0.5","PublicIPv6":5}',
      /PublicIPv6 must be a string or null/,
    ],
    [
      "PublicIPv6 an IPv4 address",
      "198.19.5.0-24&fd00:19:0:5::-64",
      '{"PublicIP":"198.18.0.5","PublicIPv6":"198.18.0.5"}',
      /PublicIPv6 must be an IPv6 address/,
    ],
    [
      "BackendV6Data not vxlan data",
      "198.19.5.0-24&fd00:19:0:5::-64",
      '{"PublicIP":"198.18.0.5","PublicIPv6":"fd00:18::5","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:05"},"BackendV6Data":{"VNI":1,"VtepMAC":"nope"}}',
      /^BackendV6Data: .*VtepMAC/,
    ],
  ];
  for (const [name, key, value, re] of bad)
    test(`rejects ${name}`, () => {
      const d = decodeLeaseRecord(rec(key, value), dualCfg);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.reason).toMatch(re);
    });
  test("two leases overlap when either family does", () => {
    const a = lease("198.19.5.0/24", "198.18.0.5", "fd00:19:0:5::/64", "fd00:18::5");
    const sameV4 = lease("198.19.5.0/24", "198.18.0.6", "fd00:19:0:6::/64", "fd00:18::6");
    const sameV6 = lease("198.19.6.0/24", "198.18.0.6", "fd00:19:0:5::/64", "fd00:18::6");
    const apart = lease("198.19.7.0/24", "198.18.0.7", "fd00:19:0:7::/64", "fd00:18::7");
    expect(overlapping(a, [a, sameV4, sameV6, apart]).map((l) => l.key)).toEqual([sameV4.key, sameV6.key]);
  });
});

describe("allocating the IPv6 half (flannel's rules: among the first 100 free from IPv6SubnetMin)", () => {
  const base = { config: dualCfg, publicIp: ip("198.18.0.2"), previous: null, random: () => 0 };
  test("a new lease gets both a free IPv4 and a free IPv6 subnet", () => {
    const taken = [
      lease("198.19.1.0/24", "198.18.0.9", "fd00:19:0:1::/64", "fd00:18::9"),
      lease("198.19.2.0/24", "198.18.0.8", "fd00:19:0:2::/64", "fd00:18::8"),
    ];
    const c = chooseSubnet({ ...base, leases: taken });
    expect(c.kind).toBe("new");
    if (c.kind !== "new") return;
    expect(formatCidr(c.subnet)).toBe("198.19.3.0/24");
    expect(formatCidr6(c.subnet6!)).toBe("fd00:19:0:3::/64");
  });
  test("the previous pair is taken back when both are free; a taken IPv6 half is replaced alone", () => {
    const prev = { previous: parseCidr("198.19.77.0/24")!, previous6: c6("fd00:19:0:77::/64") };
    const both = chooseSubnet({ ...base, ...prev, leases: [] });
    expect(both.kind === "new" && [formatCidr(both.subnet), formatCidr6(both.subnet6!), both.why]).toEqual([
      "198.19.77.0/24",
      "fd00:19:0:77::/64",
      "previous",
    ]);
    const other = lease("198.19.9.0/24", "198.18.0.9", "fd00:19:0:77::/64", "fd00:18::9");
    const half = chooseSubnet({ ...base, ...prev, leases: [other] });
    expect(half.kind === "new" && [formatCidr(half.subnet), formatCidr6(half.subnet6!)]).toEqual([
      "198.19.77.0/24",
      "fd00:19:0:1::/64",
    ]);
  });
  test("a random pick spreads over the first 100 free IPv6 subnets", () => {
    const picks = new Set<string>();
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const c = chooseSubnet({ ...base, leases: [], random: () => r });
      if (c.kind === "new") picks.add(formatCidr6(c.subnet6!));
    }
    expect([...picks]).toEqual([
      "fd00:19:0:1::/64",
      "fd00:19:0:1a::/64",
      "fd00:19:0:33::/64",
      "fd00:19:0:64::/64",
    ]);
  });
  test("our lease is reused when its IPv6 half fits the config", () => {
    const mine = lease("198.19.9.0/24", "198.18.0.2", "fd00:19:0:9::/64", "fd00:18::2");
    expect(chooseSubnet({ ...base, leases: [mine] })).toEqual({ kind: "reuse", lease: mine });
    expect(fitsIpv6(dualCfg, mine)).toBe(true);
  });
  test("IPv6 turned on: our IPv4-only lease keeps its IPv4 subnet under a new dual key", () => {
    const mine = lease("198.19.9.0/24", "198.18.0.2", null, null);
    const other = lease("198.19.1.0/24", "198.18.0.9", "fd00:19:0:1::/64", "fd00:18::9");
    const c = chooseSubnet({ ...base, leases: [mine, other] });
    expect(c.kind === "rekey" && [c.lease.key, formatCidr6(c.subnet6!)]).toEqual([
      mine.key,
      "fd00:19:0:2::/64",
    ]);
  });
  test("IPv6 turned off: our dual-stack lease keeps its IPv4 subnet under a plain key", () => {
    const mine = lease("198.19.9.0/24", "198.18.0.2", "fd00:19:0:9::/64", "fd00:18::2");
    expect(chooseSubnet({ ...base, config: v4Cfg, leases: [mine] })).toEqual({
      kind: "rekey",
      lease: mine,
      subnet6: null,
    });
  });
  test("a full IPv6 range says so with its capacity", () => {
    const tiny = parseNetworkConfig(
      JSON.stringify({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "fd00:19::/124" }),
    );
    const leases = ["1", "2", "3"].map((n) =>
      lease(
        `198.19.${n}.0/24`,
        `198.18.1.${n}`,
        `fd00:19::${(Number(n) * 4).toString(16)}/126`,
        `fd00:18::${n}`,
      ),
    );
    expect(chooseSubnet({ ...base, config: tiny, leases })).toEqual({ kind: "full6", capacity: 3n });
  });
  test("a lost race excludes both halves of the key it lost", () => {
    const c = chooseSubnet({
      ...base,
      leases: [],
      exclude: new Set(["198.19.1.0-24&fd00:19:0:1::-64"]),
    });
    expect(c.kind === "new" && [formatCidr(c.subnet), formatCidr6(c.subnet6!)]).toEqual([
      "198.19.2.0/24",
      "fd00:19:0:2::/64",
    ]);
  });
});

describe("what a node remembers across restarts and reboots", () => {
  const env: SubnetEnv = {
    network: parseCidr("198.19.0.0/16")!,
    subnet: parseCidr("198.19.5.0/24")!,
    network6: c6("fd00:19::/56"),
    subnet6: c6("fd00:19:0:5::/64"),
    mtu: 1430,
    ipMasq: false,
  };
  test("subnet.env gives both halves when its IPv6 network is the config's", () => {
    const m = nodeMemory(env, null, parseCidr("198.19.0.0/16")!, c6("fd00:19::/56"));
    expect(formatCidr(m.previous!)).toBe("198.19.5.0/24");
    expect(formatCidr6(m.previous6!)).toBe("fd00:19:0:5::/64");
    expect([...m.owned].sort()).toEqual(["198.19.5.0-24", "198.19.5.0-24&fd00:19:0:5::-64"]);
    const moved = nodeMemory(env, null, parseCidr("198.19.0.0/16")!, c6("fd00:20::/56"));
    expect(moved.previous6).toBeNull();
  });
  test("the state file holds the dual key and survives the reboot that empties /run", () => {
    const d = mkdtempSync(join(tmpdir(), "tartan-unit-"));
    try {
      const p = join(d, "n1.lease");
      writeStateFile(p, "198.19.5.0-24&fd00:19:0:5::-64");
      expect(readStateFile(p)).toBe("198.19.5.0-24&fd00:19:0:5::-64");
      const m = nodeMemory(null, readStateFile(p), parseCidr("198.19.0.0/16")!, c6("fd00:19::/56"));
      expect(formatCidr6(m.previous6!)).toBe("fd00:19:0:5::/64");
      writeFileSync(p, "198.19.5.0-24&fd00:19:0:5:0::-64\n");
      expect(readStateFile(p)).toBeNull();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
  test("a lease is ours by its key or by its IPv4 subnet alone (IPv6 may have been added since)", () => {
    const m = nodeMemory(null, "198.19.5.0-24", parseCidr("198.19.0.0/16")!, c6("fd00:19::/56"));
    expect(remembers(m, lease("198.19.5.0/24", "198.18.0.2", "fd00:19:0:9::/64", "fd00:18::2"))).toBe(true);
    expect(remembers(m, lease("198.19.6.0/24", "198.18.0.2", "fd00:19:0:5::/64", "fd00:18::2"))).toBe(false);
  });
});

describe("subnet.env and docker-opts for dual stack", () => {
  const env: SubnetEnv = {
    network: parseCidr("10.5.0.0/16")!,
    subnet: parseCidr("10.5.34.0/24")!,
    network6: c6("fc00::/48"),
    subnet6: c6("fc00:0:0:5::/64"),
    mtu: 1430,
    ipMasq: true,
  };
  const text =
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n";
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  test("flanneld's order: the IPv6 pair between FLANNEL_SUBNET and FLANNEL_MTU, the subnet as network + 1", () => {
    expect(formatSubnetEnv(env)).toBe(text);
    expect(parseSubnetEnv(text)).toEqual(env);
  });
  test("round-trips through the file", () => {
    const d = mkdtempSync(join(tmpdir(), "tartan-unit-"));
    dirs.push(d);
    writeSubnetEnv(join(d, "subnet.env"), env);
    expect(readFileSync(join(d, "subnet.env"), "utf8")).toBe(text);
    expect(readSubnetEnv(join(d, "subnet.env"))).toEqual({ kind: "ok", env });
  });
  test("one half of the IPv6 pair without the other is corrupt", () => {
    expect(() => parseSubnetEnv(text.replace(/FLANNEL_IPV6_NETWORK=.*\n/, ""))).toThrow(
      /^FLANNEL_IPV6_NETWORK is missing \(FLANNEL_IPV6_SUBNET is set\)$/,
    );
    expect(() => parseSubnetEnv(text.replace(/FLANNEL_IPV6_SUBNET=.*\n/, ""))).toThrow(
      /^FLANNEL_IPV6_SUBNET is missing/,
    );
    expect(() => parseSubnetEnv(text.replace("fc00::/48", "fc00::1/48"))).toThrow(
      /^FLANNEL_IPV6_NETWORK=fc00::1\/48 is not an IPv6 CIDR/,
    );
    expect(() => parseSubnetEnv(text.replace("fc00:0:0:5::1/64", "10.5.34.1/24"))).toThrow(
      /^FLANNEL_IPV6_SUBNET=10\.5\.34\.1\/24 is not an address\/len/,
    );
  });
  const flags = { individual: false, combined: false, combinedKey: "DOCKER_OPTS", noIpMasq: false };
  test("mk-docker-opts.sh writes nothing for IPv6, and neither does docker-opts by default", () => {
    const v4 = { network: env.network, subnet: env.subnet, mtu: 1430, ipMasq: true };
    expect(formatDockerOpts(env, flags)).toBe(formatDockerOpts(v4, flags));
  });
  test("--ipv6 adds Docker's --ipv6 and --fixed-cidr-v6, sorted by name as the script lists options", () => {
    expect(formatDockerOpts(env, { ...flags, ipv6: true })).toBe(
      'DOCKER_OPT_BIP="--bip=10.5.34.1/24"\nDOCKER_OPT_FIXED_CIDR_V6="--fixed-cidr-v6=fc00:0:0:5::/64"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_IPV6="--ipv6"\nDOCKER_OPT_MTU="--mtu=1430"\n' +
        'DOCKER_OPTS=" --bip=10.5.34.1/24 --fixed-cidr-v6=fc00:0:0:5::/64 --ip-masq=false --ipv6 --mtu=1430"\n',
    );
  });
  test("the command takes --ipv6", async () => {
    const d = mkdtempSync(join(tmpdir(), "tartan-unit-"));
    dirs.push(d);
    writeFileSync(join(d, "subnet.env"), text);
    expect(
      await main(["docker-opts", "-f", join(d, "subnet.env"), "-d", join(d, "docker.env"), "-c", "--ipv6"]),
    ).toBe(0);
    expect(readFileSync(join(d, "docker.env"), "utf8")).toBe(
      'DOCKER_OPTS=" --bip=10.5.34.1/24 --fixed-cidr-v6=fc00:0:0:5::/64 --ip-masq=false --ipv6 --mtu=1430"\n',
    );
  });
});

describe("the kernel entries of dual-stack peers", () => {
  const peer = lease("198.19.7.0/24", "198.18.0.2", "fd00:19:0:7::/64", "fd00:18::2");
  const v4only = lease("198.19.8.0/24", "198.18.0.3", null, null);
  const p = {
    device: "flannel.1",
    extIface: "eth0",
    direct: () => false,
    v6: { device: "flannel-v6.1", direct: () => false },
  };
  const entries = entriesOf(
    () => true,
    (l) => isVxlan6Peer(l, 1),
  );
  test("vxlan: flanneld's three entries per family, IPv6 on flannel-v6.1 via the PublicIPv6", () => {
    expect(addLines([peer, v4only], p, entries)).toEqual({
      ip: [
        "neigh replace 198.19.7.0 lladdr 0e:7a:01:12:00:02 dev flannel.1 nud permanent",
        "route replace 198.19.7.0/24 via 198.19.7.0 dev flannel.1 onlink",
        "neigh replace fd00:19:0:7:: lladdr 0e:76:01:00:00:02 dev flannel-v6.1 nud permanent",
        "route replace fd00:19:0:7::/64 via fd00:19:0:7:: dev flannel-v6.1 onlink",
        "neigh replace 198.19.8.0 lladdr 0e:7a:01:12:00:02 dev flannel.1 nud permanent",
        "route replace 198.19.8.0/24 via 198.19.8.0 dev flannel.1 onlink",
      ],
      bridge: [
        "fdb replace 0e:7a:01:12:00:02 dev flannel.1 dst 198.18.0.2 self permanent",
        "fdb replace 0e:76:01:00:00:02 dev flannel-v6.1 dst fd00:18::2 self permanent",
        "fdb replace 0e:7a:01:12:00:02 dev flannel.1 dst 198.18.0.3 self permanent",
      ],
    });
    expect(removeLines([peer], p, entries)).toEqual({
      ip: [
        "route del 198.19.7.0/24 dev flannel.1",
        "neigh del 198.19.7.0 dev flannel.1",
        "route del fd00:19:0:7::/64 dev flannel-v6.1",
        "neigh del fd00:19:0:7:: dev flannel-v6.1",
      ],
      bridge: [
        "fdb del 0e:7a:01:12:00:02 dev flannel.1 dst 198.18.0.2 self",
        "fdb del 0e:76:01:00:00:02 dev flannel-v6.1 dst fd00:18::2 self",
      ],
    });
  });
  test("vxlan DirectRouting: an IPv6 peer on our L2 gets a plain route via its PublicIPv6", () => {
    const d = { ...p, v6: { device: "flannel-v6.1", direct: () => true } };
    expect(addLines([peer], d, entries).ip).toContain(
      "route replace fd00:19:0:7::/64 via fd00:18::2 dev eth0",
    );
  });
  test("host-gw: the IPv6 subnet via the PublicIPv6", () => {
    expect(hostGwRoute6(peer, "eth0")).toEqual({
      dst: "fd00:19:0:7::/64",
      gateway: "fd00:18::2",
      dev: "eth0",
      onlink: false,
    });
    expect(hostGwRoute6(v4only, "eth0")).toBeNull();
  });
  test("IPv6 on-link lookup for host-gw and DirectRouting", () => {
    const rl = routeLookup6([
      { dst: "default", gateway: "fd00:18::fe", dev: "eth0" },
      { dst: "fd00:18::/64", dev: "eth0", protocol: "kernel" },
      { dst: "fd00:99::/64", gateway: "fd00:18::fe", dev: "eth0" },
    ]);
    expect(rl.isDirect(ip6("fd00:18::2"))).toBe(true);
    expect(rl.isDirect(ip6("fd00:99::2"))).toBe(false);
    expect(rl.isDirect(ip6("2001:db8::1"))).toBe(false);
  });
  test("the IPv6 device's MAC is stable and never the IPv4 device's", () => {
    const m6 = stableVtepMac6(ip6("fd00:18::2"), 1);
    expect(m6).toBe(stableVtepMac6(ip6("fd00:18::2"), 1));
    expect(m6).not.toBe(stableVtepMac(ip("198.18.0.2"), 1));
    expect(Number.parseInt(m6.slice(0, 2), 16) & 3).toBe(2);
  });
  test("one MTU right for both families: underlay − 70 unless Backend.MTU says otherwise", () => {
    expect(dualStackMtu(null, 1500)).toEqual({ pods: 1430, device6: 1430 });
    expect(dualStackMtu(1400, 1500)).toEqual({ pods: 1400, device6: 1400 });
    // the kernel refuses an IPv6 vxlan device above underlay − 70
    expect(dualStackMtu(1450, 1500)).toEqual({ pods: 1450, device6: 1430 });
  });
  test("ip-masq: the same rules in table ip6 tartan, multicast ff00::/8", () => {
    const r = masqRuleset6(c6("fd00:19::/56") as Cidr6, c6("fd00:19:0:5::/64"));
    expect(r).toContain("table ip6 tartan {");
    expect(
      r
        .split("\n")
        .filter((l) => /return|masquerade/.test(l))
        .map((l) => l.trim().replace(/ comment ".*"$/, "")),
    ).toEqual([
      "meta mark & 0x4000 == 0x4000 return",
      "ip6 saddr fd00:19::/56 ip6 daddr fd00:19::/56 return",
      "ip6 saddr != fd00:19::/56 ip6 daddr fd00:19:0:5::/64 return",
      "ip6 saddr fd00:19::/56 ip6 daddr != ff00::/8 masquerade fully-random",
      "ip6 saddr != fd00:19::/56 ip6 daddr fd00:19::/56 masquerade fully-random",
    ]);
  });
});
