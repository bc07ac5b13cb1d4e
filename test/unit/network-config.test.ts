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
  test("unknown extra fields are ignored", () => {
    expect(cfg({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", GBP: false }, Foo: 1 }).subnetLen).toBe(
      24,
    );
  });
});

describe("network config errors name the field and what is allowed", () => {
  const bad: [string, unknown, RegExp][] = [
    ["not JSON", "{", /not valid JSON/],
    ["not an object", [], /must be a JSON object/],
    ["missing Network", {}, /Network is required/],
    ["Network not a CIDR", { Network: "10.0.0.0" }, /Network must be an IPv4 CIDR/],
    ["Network not a string", { Network: 7 }, /Network must be a string/],
    ["too small", { Network: "10.0.0.0/29" }, /too small.*\/28/],
    ["SubnetLen too long", { Network: "10.0.0.0/16", SubnetLen: 31 }, /SubnetLen must be at most 30/],
    ["fewer than four subnets", { Network: "10.0.0.0/16", SubnetLen: 17 }, /fewer than four subnets/],
    ["SubnetLen not a number", { Network: "10.0.0.0/16", SubnetLen: "24" }, /SubnetLen must be a number/],
    [
      "SubnetMin outside",
      { Network: "10.0.0.0/16", SubnetMin: "10.1.0.0" },
      /SubnetMin 10.1.0.0 is not inside/,
    ],
    [
      "SubnetMax misaligned",
      { Network: "10.0.0.0/16", SubnetMax: "10.0.5.7" },
      /SubnetMax 10.0.5.7 is not on a \/24 boundary/,
    ],
    ["SubnetMin not an IP", { Network: "10.0.0.0/16", SubnetMin: "x" }, /SubnetMin must be an IPv4 address/],
    [
      "min above max",
      { Network: "10.0.0.0/16", SubnetMin: "10.0.9.0", SubnetMax: "10.0.2.0" },
      /above SubnetMax/,
    ],
    [
      "unknown backend",
      { Network: "10.0.0.0/16", Backend: { Type: "udp" } },
      /Backend.Type must be one of ebpf-vxlan, vxlan, host-gw, alloc/,
    ],
    ["VNI too big", { Network: "10.0.0.0/16", Backend: { VNI: 1 << 24 } }, /VNI/],
    ["Port too big", { Network: "10.0.0.0/16", Backend: { Port: 70000 } }, /Port/],
    ["MTU too small", { Network: "10.0.0.0/16", Backend: { MTU: 100 } }, /MTU must be at least 576/],
    ["IPv6", { Network: "10.0.0.0/16", EnableIPv6: true }, /IPv6/],
  ];
  for (const [name, input, re] of bad) {
    test(name, () => {
      expect(() => parseNetworkConfig(typeof input === "string" ? input : JSON.stringify(input))).toThrow(re);
    });
  }
});
