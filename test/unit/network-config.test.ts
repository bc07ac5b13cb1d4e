import { describe, expect, test } from "bun:test";
import { formatCidr, formatIp4 } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6 } from "../../src/config/cidr6.ts";
import {
  isValidSubnet6,
  parseNetworkConfig,
  subnetAt6,
  subnetCapacity,
  subnetCapacity6,
} from "../../src/config/network.ts";

const cfg = (o: unknown) => parseNetworkConfig(JSON.stringify(o));

describe("network config defaults (flannel's)", () => {
  test("a /16 gets /24 subnets, skipping the first", () => {
    const c = cfg({ Network: "10.244.0.0/16" });
    expect(formatCidr(c.network)).toBe("10.244.0.0/16");
    expect(c.subnetLen).toBe(24);
    expect(formatIp4(c.subnetMin)).toBe("10.244.1.0");
    expect(formatIp4(c.subnetMax)).toBe("10.244.255.0");
    expect(subnetCapacity(c)).toBe(255);
    expect(c.backend).toEqual({ type: "vxlan", vni: 1, port: 8472, directRouting: false, mtu: null });
  });
  test("a /22 still gets /24; a /23 gets prefix+2", () => {
    expect(cfg({ Network: "10.0.0.0/22" }).subnetLen).toBe(24);
    expect(cfg({ Network: "10.0.0.0/23" }).subnetLen).toBe(25);
    expect(cfg({ Network: "10.0.0.0/28" }).subnetLen).toBe(30);
  });
  test("the network address is masked to its prefix, as flannel does", () => {
    expect(formatCidr(cfg({ Network: "10.244.1.7/16" }).network)).toBe("10.244.0.0/16");
  });
  test("explicit values are kept", () => {
    const c = cfg({
      Network: "198.19.0.0/16",
      SubnetLen: 20,
      SubnetMin: "198.19.16.0",
      SubnetMax: "198.19.64.0",
      Backend: { Type: "ebpf-vxlan", VNI: 42, Port: 4789, DirectRouting: true, MTU: 9000 },
    });
    expect(c.subnetLen).toBe(20);
    expect(subnetCapacity(c)).toBe(4);
    expect(c.backend).toEqual({ type: "ebpf-vxlan", vni: 42, port: 4789, directRouting: true, mtu: 9000 });
  });
  test("Port 0 means the kernel default 8472", () => {
    expect(cfg({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", Port: 0 } }).backend.port).toBe(8472);
  });
  test("unknown extra fields are ignored, with a warning naming each", () => {
    const c = cfg({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", GBP: false }, Foo: 1 });
    expect(c.subnetLen).toBe(24);
    expect(c.warnings).toEqual(['unknown key "Foo" is ignored (flannel ignores it too)']);
  });
});

describe("dual stack (EnableIPv6) defaults, as flannel's CheckNetworkConfig", () => {
  const dual = (o: Record<string, unknown>) =>
    cfg({ Network: "10.244.0.0/16", EnableIPv6: true, ...o }).ipv6!;
  test("IPv4 only unless EnableIPv6 is true", () => {
    expect(cfg({ Network: "10.244.0.0/16" }).ipv6).toBeNull();
    expect(cfg({ Network: "10.244.0.0/16", EnableIPv6: false, IPv6Network: "fd00::/56" }).ipv6).toBeNull();
  });
  test("a /48 gets /64 subnets, skipping the first; the range ends one subnet before the next network", () => {
    const c6 = dual({ IPv6Network: "fc00::/48" });
    expect(formatCidr6(c6.network)).toBe("fc00::/48");
    expect(c6.subnetLen).toBe(64);
    expect(formatIp6(c6.subnetMin)).toBe("fc00:0:0:1::");
    expect(formatIp6(c6.subnetMax)).toBe("fc00:0:0:ffff::");
    expect(subnetCapacity6(c6)).toBe(65535n);
    expect(formatCidr6(subnetAt6(c6, 4n))).toBe("fc00:0:0:5::/64");
  });
  test("/64 up to a /62 network, else prefix + 2 (down to a /124)", () => {
    expect(dual({ IPv6Network: "fd00::/62" }).subnetLen).toBe(64);
    expect(dual({ IPv6Network: "fd00::/63" }).subnetLen).toBe(65);
    expect(dual({ IPv6Network: "fd00::/124" }).subnetLen).toBe(126);
    expect(subnetCapacity6(dual({ IPv6Network: "fd00::/124" }))).toBe(3n);
  });
  test("host bits in IPv6Network are masked away, with a warning", () => {
    const c = cfg({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:19::1/56" });
    expect(formatCidr6(c.ipv6!.network)).toBe("fd00:19::/56");
    expect(c.warnings).toEqual([
      "IPv6Network=fd00:19::1/56 has host bits set; it means fd00:19::/56, as in flannel",
    ]);
  });
  test("explicit values are kept, in any letter case", () => {
    const c = cfg({
      network: "10.244.0.0/16",
      enableipv6: true,
      ipv6network: "fd00:19::/56",
      IPV6SUBNETLEN: 72,
      ipv6SubnetMin: "fd00:19:0:1::",
      ipv6subnetmax: "fd00:19:0:2::",
    });
    const c6 = c.ipv6!;
    expect(c6.subnetLen).toBe(72);
    expect(formatIp6(c6.subnetMin)).toBe("fd00:19:0:1::");
    expect(subnetCapacity6(c6)).toBe(257n);
    expect(c.warnings).toEqual([]);
  });
  test("valid IPv6 subnets are of IPv6SubnetLen inside IPv6Network", () => {
    const c6 = dual({ IPv6Network: "fd00:19::/56" });
    expect(isValidSubnet6(c6, { ip: subnetAt6(c6, 2n).ip, len: 64 })).toBe(true);
    expect(isValidSubnet6(c6, { ip: subnetAt6(c6, 2n).ip, len: 60 })).toBe(false);
    expect(isValidSubnet6(c6, { ip: 0xfd01n << 112n, len: 64 })).toBe(false);
  });
});

describe("net-conf.json keys as flannel (Go's encoding/json) reads them", () => {
  test("any letter case of every known key", () => {
    const c = cfg({
      network: "198.19.0.0/16",
      SUBNETLEN: 20,
      subnetmin: "198.19.16.0",
      SubnetMAX: "198.19.64.0",
      enableipv4: true,
      backend: { type: "ebpf-vxlan", vni: 42, port: 4789, directrouting: true, mtu: 9000 },
    });
    expect(formatCidr(c.network)).toBe("198.19.0.0/16");
    expect(c.subnetLen).toBe(20);
    expect(formatIp4(c.subnetMin)).toBe("198.19.16.0");
    expect(formatIp4(c.subnetMax)).toBe("198.19.64.0");
    expect(c.backend).toEqual({ type: "ebpf-vxlan", vni: 42, port: 4789, directRouting: true, mtu: 9000 });
    expect(c.warnings).toEqual([]);
  });
  test("a misspelt key warns with the key it was probably meant to be", () => {
    const c = cfg({ Network: "10.0.0.0/16", SubnetLenght: 26, Backend: { Type: "vxlan", VIN: 7 } });
    expect(c.subnetLen).toBe(24);
    expect(c.backend.vni).toBe(1);
    expect(c.warnings).toEqual([
      'unknown key "SubnetLenght" is ignored (flannel ignores it too); did you mean "SubnetLen"?',
      'unknown key "Backend.VIN" is ignored (flannel ignores it too); did you mean "Backend.VNI"?',
    ]);
  });
  test("flannel keys Tartan has no use for warn only when they ask for something", () => {
    expect(cfg({ Network: "10.0.0.0/16", EnableNFTables: true }).warnings).toEqual([]);
    expect(
      cfg({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", GBP: false, Learning: false } }).warnings,
    ).toEqual([]);
    expect(cfg({ Network: "10.0.0.0/16", IPv6Network: "fd00::/56" }).warnings).toEqual([
      '"IPv6Network" is flannel\'s, but has no effect here: EnableIPv6 is not true, so the network is IPv4 only (add "EnableIPv6": true for dual stack)',
    ]);
    expect(cfg({ Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56" }).warnings).toEqual([]);
    expect(cfg({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", GBP: true } }).warnings).toEqual([
      "\"Backend.GBP\" is flannel's, but has no effect here: Tartan's vxlan devices carry no group policy",
    ]);
  });
  test("two spellings of one key: the last counts, as in Go, with a warning", () => {
    const c = cfg({ Network: "10.0.0.0/16", network: "10.1.0.0/16" });
    expect(formatCidr(c.network)).toBe("10.1.0.0/16");
    expect(c.warnings).toEqual([
      '"Network" is given twice (as "Network" and "network"); the last one counts, as in flannel',
    ]);
  });
  test("host bits in Network are masked as flannel masks them, with a warning", () => {
    const c = cfg({ Network: "10.244.1.0/16" });
    expect(formatCidr(c.network)).toBe("10.244.0.0/16");
    expect(c.warnings).toEqual([
      "Network=10.244.1.0/16 has host bits set; it means 10.244.0.0/16, as in flannel",
    ]);
  });
});

describe("network config errors name the field and what is allowed", () => {
  const bad: [string, unknown, RegExp][] = [
    ["not JSON", "{", /not valid JSON/],
    ["not an object", [], /must be a JSON object/],
    ["missing Network", {}, /^network config: Network is required: a CIDR like 10\.244\.0\.0\/16$/],
    [
      "Network not a CIDR",
      { Network: "10.0.0.0" },
      /^network config: Network=10\.0\.0\.0: must be an IPv4 CIDR like 10\.244\.0\.0\/16$/,
    ],
    ["Network not a string", { Network: 7 }, /^network config: Network=7: must be a string/],
    ["too small", { Network: "10.0.0.0/29" }, /^network config: Network=10\.0\.0\.0\/29: too small.*\/28$/],
    [
      "SubnetLen too long",
      { Network: "10.0.0.0/16", SubnetLen: 31 },
      /^network config: SubnetLen=31: must be at most 30$/,
    ],
    [
      "fewer than four subnets",
      { Network: "10.0.0.0/16", SubnetLen: 17 },
      /^network config: SubnetLen=17: leaves room for fewer than four subnets in Network 10\.0\.0\.0\/16; use 18 or more$/,
    ],
    [
      "SubnetLen not a number",
      { Network: "10.0.0.0/16", SubnetLen: "24" },
      /^network config: SubnetLen="24": must be a number/,
    ],
    [
      "SubnetMin outside",
      { Network: "10.0.0.0/16", SubnetMin: "10.1.0.0" },
      /^network config: SubnetMin=10\.1\.0\.0: not inside Network 10\.0\.0\.0\/16$/,
    ],
    [
      "SubnetMax misaligned",
      { Network: "10.0.0.0/16", SubnetMax: "10.0.5.7" },
      /^network config: SubnetMax=10\.0\.5\.7: not on a \/24 boundary \(SubnetLen 24\)$/,
    ],
    [
      "SubnetMin not an IP",
      { Network: "10.0.0.0/16", SubnetMin: "x" },
      /^network config: SubnetMin=x: must be an IPv4 address/,
    ],
    [
      "min above max",
      { Network: "10.0.0.0/16", SubnetMin: "10.0.9.0", SubnetMax: "10.0.2.0" },
      /^network config: SubnetMin=10\.0\.9\.0: above SubnetMax 10\.0\.2\.0$/,
    ],
    [
      "unknown backend",
      { Network: "10.0.0.0/16", Backend: { Type: "udp" } },
      /^network config: Backend\.Type="udp": must be one of ebpf-vxlan, vxlan, host-gw, alloc/,
    ],
    [
      "VNI too big",
      { Network: "10.0.0.0/16", Backend: { VNI: 1 << 24 } },
      /^network config: Backend\.VNI=16777216: must be 0\.\.16777215$/,
    ],
    [
      "Port too big",
      { Network: "10.0.0.0/16", Backend: { Port: 70000 } },
      /^network config: Backend\.Port=70000: must be 0\.\.65535$/,
    ],
    [
      "MTU too small",
      { Network: "10.0.0.0/16", Backend: { MTU: 100 } },
      /^network config: Backend\.MTU=100: must be at least 576$/,
    ],
    [
      "Backend not an object",
      { Network: "10.0.0.0/16", Backend: "vxlan" },
      /^network config: Backend="vxlan": must be an object/,
    ],
    [
      "IPv6 without its network",
      { Network: "10.0.0.0/16", EnableIPv6: true },
      /^network config: IPv6Network is required when EnableIPv6 is true: a CIDR like fd00:19::\/56$/,
    ],
    [
      "IPv6-only",
      { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/56" },
      /^network config: EnableIPv4=false: IPv6-only networks are not supported \(flannel runs them only with the Kubernetes subnet manager\)/,
    ],
    [
      "EnableIPv6 not a boolean",
      { Network: "10.0.0.0/16", EnableIPv6: "yes" },
      /^network config: EnableIPv6="yes": must be true or false$/,
    ],
    [
      "IPv6Network not IPv6",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "10.0.0.0/8" },
      /^network config: IPv6Network=10\.0\.0\.0\/8: must be an IPv6 CIDR like fd00:19::\/56$/,
    ],
    [
      "IPv6Network IPv4-mapped",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "::ffff:10.0.0.0/104" },
      /^network config: IPv6Network=::ffff:10\.0\.0\.0\/104: must be an IPv6 network, not IPv4-mapped$/,
    ],
    [
      "IPv6Network too small",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/125" },
      /^network config: IPv6Network=fd00::\/125: too small; the smallest useful IPv6 network is a \/124$/,
    ],
    [
      "IPv6SubnetLen too long",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetLen: 127 },
      /^network config: IPv6SubnetLen=127: must be at most 126$/,
    ],
    [
      "IPv6SubnetLen leaves fewer than four subnets",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetLen: 57 },
      /^network config: IPv6SubnetLen=57: leaves room for fewer than four subnets in IPv6Network fd00::\/56; use 58 or more$/,
    ],
    [
      "IPv6SubnetLen not a number",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetLen: "64" },
      /^network config: IPv6SubnetLen="64": must be a number: a prefix length like 64$/,
    ],
    [
      "IPv6SubnetMin outside",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetMin: "fd01::" },
      /^network config: IPv6SubnetMin=fd01::: not inside IPv6Network fd00::\/56$/,
    ],
    [
      "IPv6SubnetMax off the boundary",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetMax: "fd00:0:0:5::1" },
      /^network config: IPv6SubnetMax=fd00:0:0:5::1: not on a \/64 boundary \(IPv6SubnetLen 64\)$/,
    ],
    [
      "IPv6SubnetMin above IPv6SubnetMax",
      {
        Network: "10.0.0.0/16",
        EnableIPv6: true,
        IPv6Network: "fd00::/56",
        IPv6SubnetMin: "fd00:0:0:9::",
        IPv6SubnetMax: "fd00:0:0:5::",
      },
      /^network config: IPv6SubnetMin=fd00:0:0:9::: above IPv6SubnetMax fd00:0:0:5::$/,
    ],
    [
      "IPv6SubnetMin not an address",
      { Network: "10.0.0.0/16", EnableIPv6: true, IPv6Network: "fd00::/56", IPv6SubnetMin: "10.0.0.1" },
      /^network config: IPv6SubnetMin=10\.0\.0\.1: must be an IPv6 address like fd00:19:0:100::$/,
    ],
    [
      "a lower-case key is checked like its flannel spelling",
      { network: "10.0.0.0" },
      /^network config: Network=10\.0\.0\.0: must be/,
    ],
  ];
  for (const [name, input, re] of bad) {
    test(name, () => {
      expect(() => parseNetworkConfig(typeof input === "string" ? input : JSON.stringify(input))).toThrow(re);
    });
  }
});

test("no error message names its field twice (`Network: Network must be…`)", () => {
  const inputs: unknown[] = [
    { Network: "10.0.0.0" },
    { Network: 7 },
    { Network: "10.0.0.0/16", SubnetLen: "24" },
    { Network: "10.0.0.0/16", SubnetMin: "x" },
    { Network: "10.0.0.0/16", Backend: { Type: "udp" } },
    { Network: "10.0.0.0/16", Backend: { MTU: 100 } },
    { Network: "10.0.0.0/16", EnableIPv4: false },
  ];
  for (const input of inputs) {
    let msg = "";
    try {
      parseNetworkConfig(JSON.stringify(input));
    } catch (e) {
      msg = (e as Error).message;
    }
    const field = /^network config: ([\w.]+)=/.exec(msg)?.[1];
    expect(field).toBeDefined();
    expect(msg.split(field!).length - 1).toBe(1);
  }
});
