import { describe, expect, test } from "bun:test";
import {
  cidr6Last,
  cidr6Size,
  cidr6ToKey,
  containsCidr6,
  containsIp6,
  firstHost6,
  formatCidr6,
  formatIp6,
  keyToCidr6,
  maskOf6,
  overlaps6,
  parseCidr6,
  parseIp6,
} from "../../src/config/cidr6.ts";
import { parseSubnetKey, subnetKey } from "../../src/config/subnet-key.ts";

const ip6 = (s: string) => parseIp6(s)!;

describe("IPv6 parsing (what Go's net.ParseIP takes)", () => {
  test("full, compressed and IPv4-tailed forms", () => {
    expect(parseIp6("fc00:0000:0000:0005:0000:0000:0000:0000")).toBe(0xfc00_0000_0000_0005n << 64n);
    expect(parseIp6("fc00:0:0:5::")).toBe(0xfc00_0000_0000_0005n << 64n);
    expect(parseIp6("::")).toBe(0n);
    expect(parseIp6("::1")).toBe(1n);
    expect(parseIp6("1::")).toBe(1n << 112n);
    expect(parseIp6("FD00:18::A")).toBe(ip6("fd00:18::a"));
    expect(parseIp6("::ffff:198.18.0.1")).toBe((0xffffn << 32n) | 0xc6120001n);
    expect(parseIp6("1:2:3:4:5:6:198.18.0.1")).toBe(ip6("1:2:3:4:5:6:c612:1"));
    expect(parseIp6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).toBe((1n << 128n) - 1n);
  });
  test("rejects what is not an IPv6 address", () => {
    for (const s of [
      "",
      "198.18.0.1",
      ":",
      ":::",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7::8", // "::" must stand for at least one group
      "1::2::3",
      ":1::",
      "1:::2",
      "12345::",
      "g::",
      "fe80::1%eth0",
      "[fd00::1]",
      "::1.2.3",
      "::1.2.3.4:5",
      "::ffff:01.2.3.4",
      "::ffff:1.2.3.256",
      " ::1",
    ])
      expect(parseIp6(s)).toBeNull();
  });
});

describe("IPv6 formatting, byte for byte as Go's net.IP.String()", () => {
  const cases: [string, string][] = [
    ["fc00:0000:0000:0005:0000:0000:0000:0000", "fc00:0:0:5::"],
    ["2001:0db8:0000:0000:0000:0000:0000:0010", "2001:db8::10"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:0:0:0:0:0", "1::"],
    // one zero group is never "::"
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    // the longest run wins; of equal runs the first
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["1:0:0:1:1:0:0:1", "1::1:1:0:0:1"],
    ["FD00:0019:0000:0003::", "fd00:19:0:3::"],
    // IPv4-mapped prints as IPv4 (Go's To4 succeeds); IPv4-compatible does not
    ["::ffff:198.18.0.1", "198.18.0.1"],
    ["::198.18.0.1", "::c612:1"],
  ];
  for (const [input, want] of cases)
    test(`${input} → ${want}`, () => {
      expect(formatIp6(ip6(input))).toBe(want);
    });
  test("formatting then parsing gives the address back", () => {
    for (let i = 0; i < 2000; i++) {
      let a = 0n;
      // sparse groups make every run length of zeros show up
      for (let g = 0; g < 8; g++)
        a = (a << 16n) | BigInt(Math.random() < 0.5 ? 0 : Math.floor(Math.random() * 65536));
      expect(parseIp6(formatIp6(a))).toBe(a);
    }
  });
});

describe("IPv6 prefixes", () => {
  test("masks", () => {
    expect(maskOf6(0)).toBe(0n);
    expect(maskOf6(64)).toBe(((1n << 64n) - 1n) << 64n);
    expect(maskOf6(128)).toBe((1n << 128n) - 1n);
    expect(maskOf6(1)).toBe(1n << 127n);
  });
  test("parses strictly and leniently (Go's ParseCIDR masks)", () => {
    expect(formatCidr6(parseCidr6("fd00:19::/56")!)).toBe("fd00:19::/56");
    expect(parseCidr6("fd00:19::1/56")).toBeNull();
    expect(formatCidr6(parseCidr6("fd00:19::1/56", false)!)).toBe("fd00:19::/56");
    expect(parseCidr6("::/0")).toEqual({ ip: 0n, len: 0 });
    expect(parseCidr6("::1/128")).toEqual({ ip: 1n, len: 128 });
    for (const bad of ["fd00::", "fd00::/129", "fd00::/-1", "fd00::/6x", "10.0.0.0/8", "fd00::/"])
      expect(parseCidr6(bad, false)).toBeNull();
  });
  test("containment, overlap, size, first and last address", () => {
    const net = parseCidr6("fd00:19::/56")!;
    const sn = parseCidr6("fd00:19:0:3::/64")!;
    expect(containsIp6(net, ip6("fd00:19:0:ff::1"))).toBe(true);
    expect(containsIp6(net, ip6("fd00:19:0:100::"))).toBe(false);
    expect(containsCidr6(net, sn)).toBe(true);
    expect(containsCidr6(sn, net)).toBe(false);
    expect(overlaps6(net, sn)).toBe(true);
    expect(overlaps6(sn, parseCidr6("fd00:19:0:4::/64")!)).toBe(false);
    expect(cidr6Size(sn)).toBe(1n << 64n);
    expect(formatIp6(cidr6Last(net))).toBe("fd00:19:0:ff:ffff:ffff:ffff:ffff");
    expect(formatIp6(firstHost6(sn))).toBe("fd00:19:0:3::1");
  });
});

describe("flannel's lease keys", () => {
  test("the IPv6 half: Go's text, a dash, the length", () => {
    const sn = parseCidr6("fc00:0:0:5::/64")!;
    expect(cidr6ToKey(sn)).toBe("fc00:0:0:5::-64");
    expect(keyToCidr6("fc00:0:0:5::-64")).toEqual(sn);
  });
  test("only the exact text flannel writes is a key (it is the lease's identity)", () => {
    for (const k of ["fc00:0:0:5:0::-64", "FC00:0:0:5::-64", "fc00:0:0:5::1-64", "fc00:0:0:5::/64", "fc00::"])
      expect(keyToCidr6(k)).toBeNull();
  });
  test("a dual-stack key carries both subnets, joined by &", () => {
    const pair = parseSubnetKey("10.5.34.0-24&fc00:0:0:5::-64")!;
    expect(pair.v4).toEqual({ ip: 0x0a052200, len: 24 });
    expect(formatCidr6(pair.v6!)).toBe("fc00:0:0:5::/64");
    expect(subnetKey(pair.v4, pair.v6)).toBe("10.5.34.0-24&fc00:0:0:5::-64");
    expect(parseSubnetKey("10.5.34.0-24")).toEqual({ v4: pair.v4, v6: null });
    expect(subnetKey(pair.v4, null)).toBe("10.5.34.0-24");
  });
  test("malformed dual-stack keys", () => {
    for (const k of [
      "10.5.34.0-24&",
      "&fc00:0:0:5::-64",
      "10.5.34.0-24&fc00:0:0:5::-64&x",
      "10.5.34.1-24&fc00:0:0:5::-64",
      "10.5.34.0-24&fc00:0:0:5::1-64",
      "10.5.34.0-24,fc00:0:0:5::-64",
      "0.0.0.0-0&fc00:0:0:5::-64x",
    ])
      expect(parseSubnetKey(k)).toBeNull();
  });
});
