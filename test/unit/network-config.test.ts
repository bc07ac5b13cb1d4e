import { describe, expect, test } from "bun:test";
import { formatCidr, formatIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig, subnetCapacity } from "../../src/config/network.ts";

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
      '"IPv6Network" is flannel\'s, but has no effect here: Tartan carries IPv4 only',
    ]);
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
      "IPv6",
      { Network: "10.0.0.0/16", EnableIPv6: true },
      /^network config: EnableIPv6=true: must be false: Tartan carries IPv4 only$/,
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
