import { describe, expect, test } from "bun:test";
import { formatCidr, parseCidr } from "../../src/config/cidr.ts";
import { formatCidr6 } from "../../src/config/cidr6.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { annotationNames } from "../../src/kube/annotations.ts";
import type { LeaseEvent } from "../../src/kube/lease-source.ts";
import { type NodeLike, nodeLease, revisionOf } from "../../src/kube/node-lease.ts";
import { selectPodCidrs } from "../../src/kube/pod-cidr.ts";
import { decodeLeaseRecord } from "../../src/lease/lease.ts";
import type { RegistryRecord, WatchEvent } from "../../src/registry/registry.ts";
import { flanneldVxlanAnnotations, makeNode } from "../helpers/kube-nodes.ts";

const names = annotationNames();
const network = parseCidr("198.19.0.0/16")!;
const nets = { network, network6: null };
const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }));

function node(over: { podCIDR?: string; annotations?: Record<string, string>; rv?: string } = {}): NodeLike {
  const n = makeNode({
    name: "n7",
    podCIDR: "podCIDR" in over ? over.podCIDR : "198.19.7.0/24",
    annotations: over.annotations ?? flanneldVxlanAnnotations("198.18.0.7", "0e:7a:00:00:00:07"),
    realistic: true,
  }) as { metadata: Record<string, unknown> };
  n.metadata.resourceVersion = over.rv ?? "4711";
  return n as NodeLike;
}

describe("podCIDR selection", () => {
  test("spec.podCIDRs, one per family; the IPv6 one parsed too", () => {
    const r = selectPodCidrs({ podCIDR: "198.19.3.0/24", podCIDRs: ["198.19.3.0/24", "fd00:19:0:3::/64"] });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(formatCidr(r.cidrs.v4!)).toBe("198.19.3.0/24");
    expect(formatCidr6(r.cidrs.v6!)).toBe("fd00:19:0:3::/64");
    const v6first = selectPodCidrs({ podCIDRs: ["fd00:19:0:3::/64", "198.19.3.0/24"] });
    expect(v6first.ok && formatCidr(v6first.cidrs.v4!)).toBe("198.19.3.0/24");
  });

  test("spec.podCIDR when podCIDRs is absent; an IPv6-only node has no v4", () => {
    const r = selectPodCidrs({ podCIDR: "198.19.4.0/24" });
    expect(r.ok && formatCidr(r.cidrs.v4!)).toBe("198.19.4.0/24");
    const v6 = selectPodCidrs({ podCIDR: "fd00:19::/64" });
    expect(v6.ok && v6.cidrs.v4).toBeNull();
  });

  test("none assigned, too many, two of one family, not a CIDR", () => {
    expect(selectPodCidrs({})).toEqual({ ok: false, missing: true, why: "no podCIDR assigned" });
    expect(selectPodCidrs(undefined)).toMatchObject({ ok: false, missing: true });
    expect(selectPodCidrs({ podCIDR: "", podCIDRs: [] })).toMatchObject({ ok: false, missing: true });
    expect(selectPodCidrs({ podCIDRs: ["198.19.1.0/24", "198.19.2.0/24"] })).toMatchObject({
      ok: false,
      missing: false,
      why: expect.stringContaining("one family twice"),
    });
    expect(selectPodCidrs({ podCIDRs: ["198.19.1.0/24", "fd00::/64", "fd01::/64"] })).toMatchObject({
      ok: false,
      why: expect.stringContaining("3 podCIDRs"),
    });
    expect(selectPodCidrs({ podCIDR: "198.19.300.0/24" })).toMatchObject({
      ok: false,
      missing: false,
      why: 'podCIDR "198.19.300.0/24" is not a CIDR',
    });
  });
});

describe("Node → lease record", () => {
  test("a flanneld vxlan node becomes the record an etcd-backed flanneld would store", () => {
    const r = nodeLease(node(), names, nets);
    expect(r).toEqual({
      ok: true,
      name: "n7",
      record: {
        key: "198.19.7.0-24",
        value:
          '{"PublicIP":"198.18.0.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:7a:00:00:00:07"}}',
        expiresAt: null,
        revision: 4711,
      },
    });
    // the agent's own lease decoder accepts it as it is
    if (!r.ok) return;
    const d = decodeLeaseRecord(r.record, cfg);
    expect(d.ok && d.lease.attrs.vxlan).toEqual({ VNI: 1, VtepMAC: "0e:7a:00:00:00:07" });
  });

  test("host-gw (backend-data null) has no BackendData, as flannel's lease JSON", () => {
    const a = {
      ...flanneldVxlanAnnotations("198.18.0.7", "x"),
      "flannel.alpha.coreos.com/backend-type": "host-gw",
      "flannel.alpha.coreos.com/backend-data": "null",
    };
    const r = nodeLease(node({ annotations: a }), names, nets);
    expect(r.ok && r.record.value).toBe('{"PublicIP":"198.18.0.7","BackendType":"host-gw"}');
  });

  test("revision is the resourceVersion as a number (0 when it is not one)", () => {
    expect(revisionOf("123")).toBe(123);
    expect(revisionOf("abc")).toBe(0);
    expect(revisionOf(undefined)).toBe(0);
  });

  const good = flanneldVxlanAnnotations("198.18.0.7", "0e:7a:00:00:00:07");
  const without = (k: string) => Object.fromEntries(Object.entries(good).filter(([key]) => key !== k));
  const cases: [string, Parameters<typeof node>[0], string, RegExp][] = [
    [
      "not managed",
      { annotations: without(names.kubeSubnetManager) },
      "not-managed",
      /kube-subnet-manager is null/,
    ],
    [
      "managed = false",
      { annotations: { ...good, [names.kubeSubnetManager]: "false" } },
      "not-managed",
      /"false"/,
    ],
    ["no podCIDR", { podCIDR: undefined }, "no-podcidr", /no podCIDR/],
    ["podCIDR garbage", { podCIDR: "nope" }, "bad-podcidr", /not a CIDR/],
    ["IPv6 only", { podCIDR: "fd00:19::/64" }, "no-ipv4-podcidr", /no IPv4/],
    [
      "outside the network",
      { podCIDR: "10.244.1.0/24" },
      "outside-network",
      /10.244.1.0\/24 is not inside the network 198.19.0.0\/16/,
    ],
    ["wider than the network", { podCIDR: "198.0.0.0/8" }, "outside-network", /not inside/],
    [
      "no backend-type",
      { annotations: without(names.backendType) },
      "missing-annotation",
      /backend-type is missing/,
    ],
    ["no public-ip", { annotations: without(names.publicIp) }, "missing-annotation", /public-ip is missing/],
    [
      "bad public-ip",
      { annotations: { ...good, [names.publicIp]: "198.18.0.300" } },
      "bad-public-ip",
      /not an IPv4/,
    ],
    [
      "backend-data not JSON",
      { annotations: { ...good, [names.backendData]: "{VNI:1" } },
      "bad-backend-data",
      /not JSON/,
    ],
    [
      "vxlan without VNI",
      { annotations: { ...good, [names.backendData]: '{"VtepMAC":"0e:7a:00:00:00:07"}' } },
      "bad-backend-data",
      /vxlan needs/,
    ],
    [
      "vxlan data null",
      { annotations: { ...good, [names.backendData]: "null" } },
      "bad-backend-data",
      /vxlan needs/,
    ],
    [
      "bad MAC",
      { annotations: { ...good, [names.backendData]: '{"VNI":1,"VtepMAC":"0e:7a:00:00:07"}' } },
      "bad-vtep-mac",
      /VtepMAC "0e:7a:00:00:07"/,
    ],
  ];
  for (const [what, over, reason, detail] of cases)
    test(`skipped: ${what} (${reason})`, () => {
      const r = nodeLease(node(over), names, nets);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.name).toBe("n7");
      expect(r.reason).toBe(reason as typeof r.reason);
      expect(r.detail).toMatch(detail);
    });

  test("an object without a name is malformed", () => {
    expect(nodeLease({ metadata: {} }, names, nets)).toMatchObject({ ok: false, reason: "malformed" });
  });

  test("another prefix reads other annotation names", () => {
    const other = annotationNames("tartan.example.com/net");
    const a = Object.fromEntries(
      Object.entries(good).map(([k, v]) => [
        k.replace("flannel.alpha.coreos.com/", "tartan.example.com/net-"),
        v,
      ]),
    );
    expect(nodeLease(node({ annotations: a }), other, nets).ok).toBe(true);
    expect(nodeLease(node(), other, nets)).toMatchObject({ ok: false, reason: "not-managed" });
  });

  test("the lease events have the registries' WatchEvent shape (checked by tsc)", () => {
    const r = nodeLease(node(), names, nets);
    if (!r.ok) throw new Error("expected a lease");
    const asRegistry: RegistryRecord = r.record;
    const ev: LeaseEvent = { type: "put", record: r.record };
    const asWatch: WatchEvent = ev;
    expect(asWatch.type).toBe("put");
    expect(asRegistry.key).toBe("198.19.7.0-24");
  });
});
