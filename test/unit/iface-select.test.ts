import { describe, expect, test } from "bun:test";
import { parseIp4 } from "../../src/config/cidr.ts";
import { type IfaceInfo, selectInterface } from "../../src/net/iface.ts";

const iface = (name: string, index: number, addrs: string[]): IfaceInfo => ({
  name,
  index,
  mtu: 1500,
  mac: `02:00:00:00:00:0${index}`,
  up: true,
  addrs: addrs.map((a) => parseIp4(a)!),
});
const ifaces = [iface("lo", 1, ["127.0.0.1"]), iface("eth0", 2, ["198.18.0.2"]), iface("eth1", 3, [])];
const select = (names: string[]) =>
  selectInterface({ ifaces, names, regexes: [], routeDev: "eth0", routeWhy: "the default route" });

describe("--iface: a wrong choice says why in words", () => {
  test("by name or by address", () => {
    expect(select(["eth0"]).iface.name).toBe("eth0");
    expect(select(["198.18.0.2"]).iface.name).toBe("eth0");
  });
  test("the loopback is named as such, not as an interface without an address", () => {
    for (const n of ["lo", "127.0.0.1"])
      expect(() => select([n])).toThrow(
        `--iface=${n}: lo is the loopback interface, not usable as the underlay; name the interface other nodes reach this one through`,
      );
  });
  test("an interface with no IPv4 address", () => {
    expect(() => select(["eth1"])).toThrow("--iface=eth1: interface eth1 has no IPv4 address");
  });
});
