import { describe, expect, test } from "bun:test";
import {
  cidrLast,
  cidrToKey,
  containsCidr,
  containsIp,
  firstHost,
  formatCidr,
  formatIp4,
  keyToCidr,
  overlaps,
  parseCidr,
  parseIp4,
} from "../../src/config/cidr.ts";

describe("IPv4 parsing", () => {
  test("round-trips addresses", () => {
    for (const s of ["0.0.0.0", "10.244.3.1", "198.19.255.255", "255.255.255.255"])
      expect(formatIp4(parseIp4(s)!)).toBe(s);
  });
  test("rejects what is not a dotted quad", () => {
    for (const s of [
      "",
      "10.0.0",
      "10.0.0.256",
      "10.0.0.1.2",
      "010.0.0.1",
      "a.b.c.d",
      " 10.0.0.1",
      "10.0.0.-1",
    ])
      expect(parseIp4(s)).toBeNull();
  });
});

describe("CIDR math", () => {
  test("parses strictly and leniently", () => {
    expect(formatCidr(parseCidr("10.244.0.0/16")!)).toBe("10.244.0.0/16");
    expect(parseCidr("10.244.0.1/16")).toBeNull();
    expect(formatCidr(parseCidr("10.244.0.1/16", false)!)).toBe("10.244.0.0/16");
    expect(parseCidr("10.244.0.0/33")).toBeNull();
    expect(parseCidr("10.244.0.0")).toBeNull();
    expect(parseCidr("10.244.0.0/")).toBeNull();
    expect(formatCidr(parseCidr("0.0.0.0/0")!)).toBe("0.0.0.0/0");
  });
  test("flannel's key form round-trips and rejects misaligned keys", () => {
    const c = parseCidr("10.244.3.0/24")!;
    expect(cidrToKey(c)).toBe("10.244.3.0-24");
    expect(keyToCidr("10.244.3.0-24")).toEqual(c);
    expect(keyToCidr("10.244.3.1-24")).toBeNull();
    expect(keyToCidr("10.244.3.0_24")).toBeNull();
    expect(keyToCidr("garbage")).toBeNull();
  });
  test("containment, overlap, first host, last address", () => {
    const net = parseCidr("198.19.0.0/16")!;
    const sub = parseCidr("198.19.7.0/24")!;
    expect(containsCidr(net, sub)).toBe(true);
    expect(containsCidr(sub, net)).toBe(false);
    expect(containsIp(net, parseIp4("198.20.0.1")!)).toBe(false);
    expect(overlaps(net, sub)).toBe(true);
    expect(overlaps(sub, parseCidr("198.19.8.0/24")!)).toBe(false);
    expect(formatIp4(firstHost(sub))).toBe("198.19.7.1");
    expect(formatIp4(cidrLast(sub))).toBe("198.19.7.255");
    expect(formatIp4(cidrLast(parseCidr("0.0.0.0/0")!))).toBe("255.255.255.255");
  });
});
