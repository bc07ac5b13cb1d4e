import { describe, expect, test } from "bun:test";
import { cidrToKey, formatCidr, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig, subnetAt } from "../../src/config/network.ts";
import { chooseSubnet, renewAt } from "../../src/lease/allocate.ts";
import { decodeLeaseRecord, encodeLeaseValue, type Lease } from "../../src/lease/lease.ts";
import { diffLeases, diffSubnets } from "../../src/lease/reconcile.ts";

const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }));
const ip = (s: string) => parseIp4(s)!;

function lease(subnet: string, publicIp: string, mac = "aa:bb:cc:00:00:01"): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: { publicIp: ip(publicIp), backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: mac } },
    expiresAt: null,
    revision: 1,
  };
}

describe("flannel lease JSON", () => {
  test("vxlan lease is byte-identical to flanneld's", () => {
    const v = encodeLeaseValue({
      publicIp: ip("198.18.0.2"),
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "6e:2b:11:aa:00:01" },
    });
    expect(v).toBe(
      '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"6e:2b:11:aa:00:01"}}',
    );
  });
  test("host-gw and alloc leases omit BackendData", () => {
    expect(encodeLeaseValue({ publicIp: ip("198.18.0.2"), backendType: "host-gw", vxlan: null })).toBe(
      '{"PublicIP":"198.18.0.2","BackendType":"host-gw"}',
    );
  });
  test("decodes a record written by flanneld", () => {
    const d = decodeLeaseRecord(
      {
        key: "198.19.3.0-24",
        value:
          '{"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VtepMAC":"AA:bb:cc:dd:ee:ff","VNI":1}}',
        expiresAt: 5,
        revision: 7,
      },
      cfg,
    );
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(formatCidr(d.lease.subnet)).toBe("198.19.3.0/24");
    expect(d.lease.attrs.vxlan).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:ff" });
    expect(d.lease.expiresAt).toBe(5);
  });
  const bad: [string, string, string, RegExp][] = [
    ["not JSON", "198.19.3.0-24", "{nope", /not JSON/],
    ["wrong type", "198.19.3.0-24", '{"PublicIP":5}', /PublicIP must be a string/],
    ["bad PublicIP", "198.19.3.0-24", '{"PublicIP":"300.1.1.1"}', /PublicIP must be an IPv4/],
    [
      "bad MAC",
      "198.19.3.0-24",
      '{"PublicIP":"198.18.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}',
      /VtepMAC/,
    ],
    [
      "vxlan without data",
      "198.19.3.0-24",
      '{"PublicIP":"198.18.0.1","BackendType":"vxlan"}',
      /BackendData must be/,
    ],
    ["outside the network", "10.0.3.0-24", '{"PublicIP":"198.18.0.1"}', /outside the network/],
    ["misaligned key", "198.19.3.7-24", '{"PublicIP":"198.18.0.1"}', /is not a subnet/],
    ["wrong length", "198.19.0.0-20", '{"PublicIP":"198.18.0.1"}', /not a \/24/],
    ["garbage key", "hello", '{"PublicIP":"198.18.0.1"}', /is not a subnet/],
  ];
  for (const [name, key, value, re] of bad)
    test(`rejects ${name}`, () => {
      const d = decodeLeaseRecord({ key, value, expiresAt: null, revision: 1 }, cfg);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.reason).toMatch(re);
    });
});

describe("subnet allocation", () => {
  test("reuses the lease that carries our PublicIP", () => {
    const mine = lease("198.19.9.0/24", "198.18.0.2");
    const c = chooseSubnet({
      config: cfg,
      leases: [lease("198.19.8.0/24", "198.18.0.3"), mine],
      publicIp: ip("198.18.0.2"),
      previous: null,
    });
    expect(c).toEqual({ kind: "reuse", lease: mine });
  });
  test("takes the previous subnet from subnet.env when free", () => {
    const c = chooseSubnet({
      config: cfg,
      leases: [],
      publicIp: ip("198.18.0.2"),
      previous: parseCidr("198.19.77.0/24")!,
    });
    expect(c.kind === "new" && formatCidr(c.subnet)).toBe("198.19.77.0/24");
    expect(c.kind === "new" && c.why).toBe("previous");
  });
  test("skips the previous subnet when someone else holds it or it is out of range", () => {
    const taken = chooseSubnet({
      config: cfg,
      leases: [lease("198.19.77.0/24", "198.18.0.9")],
      publicIp: ip("198.18.0.2"),
      previous: parseCidr("198.19.77.0/24")!,
      random: () => 0,
    });
    expect(taken.kind === "new" && taken.why).toBe("random");
    const first = chooseSubnet({
      config: cfg,
      leases: [],
      publicIp: ip("198.18.0.2"),
      previous: parseCidr("198.19.0.0/24")!,
      random: () => 0,
    });
    expect(first.kind === "new" && formatCidr(first.subnet)).toBe("198.19.1.0/24");
  });
  test("a random free subnet never collides with a taken one", () => {
    const small = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/20", SubnetMin: "198.19.0.0" }));
    const leases = [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15].map((i) =>
      lease(formatCidr(subnetAt(small, i)), `198.18.1.${i}`),
    );
    for (const r of [0, 0.5, 0.999]) {
      const c = chooseSubnet({
        config: small,
        leases,
        publicIp: ip("198.18.0.2"),
        previous: null,
        random: () => r,
      });
      expect(c.kind === "new" && formatCidr(c.subnet)).toBe("198.19.3.0/24");
    }
  });
  test("excluded subnets (lost races) are not offered again", () => {
    const small = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/22", SubnetMin: "198.19.0.0" }));
    const c = chooseSubnet({
      config: small,
      leases: [],
      publicIp: ip("198.18.0.2"),
      previous: null,
      exclude: new Set(["198.19.0.0-24", "198.19.1.0-24", "198.19.2.0-24"]),
    });
    expect(c.kind === "new" && formatCidr(c.subnet)).toBe("198.19.3.0/24");
  });
  test("a full range says so with its capacity", () => {
    const small = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/22", SubnetMin: "198.19.0.0" }));
    const leases = [0, 1, 2, 3].map((i) => lease(`198.19.${i}.0/24`, `198.18.1.${i}`));
    expect(chooseSubnet({ config: small, leases, publicIp: ip("198.18.0.2"), previous: null })).toEqual({
      kind: "full",
      capacity: 4,
    });
  });
  test("renewal time is margin before expiry, never in the past, never for reservations", () => {
    expect(renewAt(10_000, 3_000, 0)).toBe(7_000);
    expect(renewAt(10_000, 3_000, 9_000)).toBe(9_000);
    expect(renewAt(null, 3_000, 0)).toBeNull();
  });
});

describe("reconcile", () => {
  test("adds, updates and removes; never programs our own subnet", () => {
    const a = lease("198.19.1.0/24", "198.18.0.1");
    const b = lease("198.19.2.0/24", "198.18.0.2");
    const b2 = lease("198.19.2.0/24", "198.18.0.2", "aa:bb:cc:00:00:99");
    const c = lease("198.19.3.0/24", "198.18.0.3");
    const own = lease("198.19.4.0/24", "198.18.0.4");
    const desired = new Map([a, b2, own].map((l) => [l.key, l]));
    const programmed = new Map([b, c].map((l) => [l.key, l]));
    const d = diffLeases(desired, programmed, own.key);
    expect(d.add.map((l) => l.key)).toEqual([a.key]);
    expect(d.update).toEqual([b2]);
    expect(d.remove.map((l) => l.key)).toEqual([c.key]);
  });
  test("an identical set is an empty diff", () => {
    const a = lease("198.19.1.0/24", "198.18.0.1");
    const m = new Map([[a.key, a]]);
    expect(diffLeases(m, new Map(m), null)).toEqual({ add: [], update: [], remove: [] });
  });
  test("a small diff names its subnets (+added ~updated -removed); none or too many names nothing", () => {
    const a = lease("198.19.1.0/24", "198.18.0.1");
    const b = lease("198.19.2.0/24", "198.18.0.2");
    const c = lease("198.19.3.0/24", "198.18.0.3");
    const d = { add: [a], update: [b], remove: [c] };
    expect(diffSubnets(d, 3)).toBe("+198.19.1.0-24 ~198.19.2.0-24 -198.19.3.0-24");
    expect(diffSubnets(d, 2)).toBeNull();
    expect(diffSubnets({ add: [], update: [], remove: [] }, 8)).toBeNull();
  });
});
