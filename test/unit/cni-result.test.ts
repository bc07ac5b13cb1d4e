/** CNI results: conversion between spec versions and the pod endpoint read from a bridge result. */
import { describe, expect, test } from "bun:test";
import { CNI_ERR, CniError } from "../../src/cni/errors.ts";
import { convertResult, parseResult, podEndpoint, routesWithGateways } from "../../src/cni/result.ts";

const V1 = {
  cniVersion: "1.0.0",
  interfaces: [
    { name: "cni0", mac: "36:5A:DB:C6:DB:B1" },
    { name: "veth53874a7e", mac: "ba:38:48:3a:c2:23" },
    { name: "eth0", mac: "3a:30:16:59:0e:66", sandbox: "/run/netns/pod" },
  ],
  ips: [{ address: "198.19.5.2/24", gateway: "198.19.5.1", interface: 2 }],
  routes: [{ dst: "198.19.0.0/16" }, { dst: "0.0.0.0/0", gw: "198.19.5.1" }],
  dns: {},
};

describe("result conversion", () => {
  test("1.0.0 → 0.4.0 and 0.3.1 adds ips[].version; everything else is kept", () => {
    for (const to of ["0.4.0", "0.3.1", "0.3.0"] as const) {
      const r = convertResult(parseResult(V1, "r"), to);
      expect(r).toEqual({
        ...V1,
        cniVersion: to,
        ips: [{ version: "4", address: "198.19.5.2/24", gateway: "198.19.5.1", interface: 2 }],
      });
    }
  });

  test("0.3.1 → 1.0.0 drops ips[].version; IPv6 gets version 6 going down", () => {
    const old = {
      cniVersion: "0.3.1",
      ips: [
        { version: "4", address: "198.19.5.2/24", interface: 0 },
        { version: "6", address: "fd00::2/64", interface: 0 },
      ],
    };
    const up = convertResult(parseResult(old, "r"), "1.0.0");
    expect(up.ips).toEqual([
      { address: "198.19.5.2/24", interface: 0 },
      { address: "fd00::2/64", interface: 0 },
    ]);
    expect(convertResult(up, "0.4.0").ips?.map((i) => i.version)).toEqual(["4", "6"]);
    expect(up.cniVersion).toBe("1.0.0");
  });

  test("a malformed result is code 6 naming the field", () => {
    let caught: unknown;
    try {
      parseResult({ ips: [{ address: "198.19.5.2" }] }, "bridge ADD result");
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(CniError);
    expect((caught as CniError).code).toBe(CNI_ERR.DECODE_FAILURE);
    expect((caught as CniError).message).toContain("bridge ADD result: ips.0.address");
  });

  test("routes without gw get the IP's gateway (what the bridge installed)", () => {
    expect(routesWithGateways(parseResult(V1, "r")).routes).toEqual([
      { dst: "198.19.0.0/16", gw: "198.19.5.1" },
      { dst: "0.0.0.0/0", gw: "198.19.5.1" },
    ]);
  });
});

describe("pod endpoint from a bridge result", () => {
  test("pod IP, pod MAC (lower case), the host veth that is not the bridge", () => {
    expect(podEndpoint(parseResult(V1, "r"), "eth0", "cni0")).toEqual({
      ip: "198.19.5.2",
      mac: "3a:30:16:59:0e:66",
      hostVeth: "veth53874a7e",
      hostMac: "ba:38:48:3a:c2:23",
    });
  });

  test("dual stack: the pod's IPv6 address too (another interface's is not the pod's)", () => {
    const r = parseResult(V1, "r");
    const dual = {
      ...r,
      ips: [
        { address: "fd00:19:0:5::9/64", interface: 1 },
        ...r.ips!,
        { address: "fd00:19:0:5::2/64", gateway: "fd00:19:0:5::1", interface: 2 },
      ],
    };
    expect(podEndpoint(dual, "eth0", "cni0")).toEqual({
      ip: "198.19.5.2",
      ip6: "fd00:19:0:5::2",
      mac: "3a:30:16:59:0e:66",
      hostVeth: "veth53874a7e",
      hostMac: "ba:38:48:3a:c2:23",
    });
  });

  test("null when the result has no such interface, no IPv4, or no single host veth", () => {
    const r = parseResult(V1, "r");
    expect(podEndpoint(r, "eth1", "cni0")).toBeNull();
    expect(podEndpoint({ ...r, ips: [{ address: "fd00::2/64", interface: 2 }] }, "eth0", "cni0")).toBeNull();
    expect(podEndpoint(r, "eth0", "other")).toBeNull();
  });
});
