/**
 * The send fast path at the pod (tartan_encap_pod, TC ingress of a pod's host-side veth),
 * packet by packet through BPF_PROG_TEST_RUN on the fixture pod's veth: a frame the pod
 * routes through its gateway to a remote subnet becomes the same VXLAN frame the bridge's
 * program builds (the kernel vxlan driver's); everything it must leave to the bridge —
 * same-node pods, the gateway, ARP, IPv6, broadcast and multicast, the outside world, our
 * own subnet, unknown destinations, a source not behind this veth, too big, TTL expiring,
 * malformed and truncated frames — passes unchanged and moves exactly its own counter.
 * Also the FIB answers both encapsulating programs share (no neighbour, blackhole).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { macString, NEXTHOP_TTL_NS } from "../../src/bpf/abi.ts";
import { BpfError } from "../../src/bpf/errors.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import {
  checksum,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  ethernet,
  hex,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ipv6,
  pattern,
  withIpv4TotalLength,
} from "../helpers/packet.ts";
import { forwarded, fromPod, innerIp, kernelVxlanFrame, runCounted } from "./frames.ts";
import { FX, type Harness, setupHarness, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await setupHarness();
});
afterAll(async () => {
  await h?.close();
});

/** The pod program run as on the fixture pod's veth (or on `ifindex`). */
function atVeth(pkt: Uint8Array, skb: { ifindex?: number; gsoSize?: number; gsoSegs?: number } = {}) {
  return runCounted(h, h.prog.encapPod, pkt, { ifindex: h.podIfindex, ...skb });
}

describe("encap at the pod's veth", () => {
  for (const [name, proto] of [
    ["TCP", IPPROTO_TCP],
    ["UDP", IPPROTO_UDP],
    ["ICMP", IPPROTO_ICMP],
  ] as const) {
    test(`${name} to a remote pod becomes the kernel's VXLAN frame, pod_encap_ok`, () => {
      const inner = innerIp({ proto });
      const r = atVeth(fromPod(inner));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ pod_encap_ok: 1 });
      expect(hex(r.data)).toBe(hex(kernelVxlanFrame(forwarded(inner), r.data)));
    });
  }

  test("the same frame as the bridge's program builds (but for the random outer IP ID)", () => {
    const pkt = fromPod(innerIp({ proto: IPPROTO_TCP, sport: 41234 }));
    const pod = atVeth(pkt);
    const bridge = runCounted(h, h.prog.encapFwd, pkt);
    expect(bridge.moved).toEqual({ encap_ok: 1 });
    const noId = (f: Uint8Array) => {
      const c = new Uint8Array(f);
      c.fill(0, 14 + 4, 14 + 6);
      c.fill(0, 14 + 10, 14 + 12);
      return hex(c);
    };
    expect(noId(pod.data)).toBe(noId(bridge.data));
  });

  test("ECN is inherited by the outer header, CE as ECT(0)", () => {
    for (const [tos, outer] of [
      [0xb8 | 1, 1],
      [0xb8 | 2, 2],
      [0xb8 | 3, 2],
    ] as const) {
      const r = atVeth(fromPod(innerIp({ proto: IPPROTO_UDP, tos })));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.data[15]).toBe(outer);
    }
  });
});

describe("the pod's veth passes what it must not encapsulate (on to the bridge)", () => {
  const broadcast = ethernet(
    { dst: "ff:ff:ff:ff:ff:ff", src: FX.podMac, type: ETH_P_IP },
    innerIp({ proto: IPPROTO_UDP, dst: "255.255.255.255" }),
  );
  const multicast = ethernet(
    { dst: "01:00:5e:00:00:fb", src: FX.podMac, type: ETH_P_IP },
    innerIp({ proto: IPPROTO_UDP, dst: "224.0.0.251" }),
  );
  const cases: Array<[string, Uint8Array, string]> = [
    ["a pod on this node", fromPod(innerIp({ proto: IPPROTO_TCP, dst: "198.19.1.9" })), "pod_pass_local"],
    ["the gateway", fromPod(innerIp({ proto: IPPROTO_ICMP, dst: "198.19.1.1" })), "pod_pass_local"],
    [
      "our own subnet's broadcast address",
      fromPod(innerIp({ proto: IPPROTO_UDP, dst: "198.19.1.255" })),
      "pod_pass_local",
    ],
    [
      "the outside world",
      fromPod(innerIp({ proto: IPPROTO_TCP, dst: "198.18.200.1" })),
      "pod_pass_unknown_dst",
    ],
    [
      "an unknown cluster subnet",
      fromPod(innerIp({ proto: IPPROTO_UDP, dst: "198.19.77.7" })),
      "pod_pass_unknown_dst",
    ],
    [
      "ARP",
      ethernet({ dst: "ff:ff:ff:ff:ff:ff", src: FX.podMac, type: ETH_P_ARP }, pattern(28)),
      "pod_pass_not_ipv4",
    ],
    [
      "IPv6",
      ethernet(
        { dst: FX.gwMac, src: FX.podMac, type: ETH_P_IPV6 },
        ipv6({ src: new Uint8Array(16), dst: new Uint8Array(16), next: 59 }, pattern(8)),
      ),
      "pod_pass_not_ipv4",
    ],
    [
      "VLAN-tagged",
      ethernet({ dst: FX.gwMac, src: FX.podMac, type: ETH_P_IP, vlan: 7 }, innerIp({ proto: IPPROTO_UDP })),
      "pod_pass_not_ipv4",
    ],
    ["broadcast", broadcast, "pod_pass_not_gateway"],
    ["multicast", multicast, "pod_pass_not_gateway"],
    [
      "to a remote pod, but bridged to another pod's MAC",
      fromPod(innerIp({ proto: IPPROTO_UDP }), "02:aa:00:00:00:09"),
      "pod_pass_not_gateway",
    ],
    [
      "from an address the endpoint map does not know",
      fromPod(innerIp({ proto: IPPROTO_UDP, src: "198.19.1.77" })),
      "pod_pass_not_endpoint",
    ],
    [
      "TTL 1 (the stack answers time-exceeded)",
      fromPod(innerIp({ proto: IPPROTO_ICMP, ttl: 1 })),
      "pod_pass_ttl",
    ],
    [
      "larger than the overlay MTU (the stack answers frag-needed or fragments)",
      fromPod(innerIp({ proto: IPPROTO_UDP, size: 1500 })),
      "pod_pass_too_big",
    ],
    [
      "IPv4 total length beyond the frame",
      fromPod(innerIp({ proto: IPPROTO_UDP }).subarray(0, 24)),
      "pod_pass_malformed",
    ],
    [
      "IPv4 total length shorter than its header",
      fromPod(withIpv4TotalLength(innerIp({ proto: IPPROTO_UDP }), 0, 16)),
      "pod_pass_malformed",
    ],
  ];
  for (const [name, pkt, counter] of cases) {
    test(`${name} → passed unchanged, ${counter}`, () => {
      const r = atVeth(pkt);
      expect(r.retval).toBe(TC_ACT_OK);
      expect(r.moved).toEqual({ [counter]: 1 });
      expect(hex(r.data)).toBe(hex(pkt));
    });
  }

  test("the pod's own address arriving on another veth (spoofed) → passed, pod_pass_not_endpoint", () => {
    const pkt = fromPod(innerIp({ proto: IPPROTO_UDP }));
    const r = atVeth(pkt, { ifindex: h.underlayIfindex });
    expect(r.retval).toBe(TC_ACT_OK);
    expect(r.moved).toEqual({ pod_pass_not_endpoint: 1 });
    expect(hex(r.data)).toBe(hex(pkt));
  });

  test("a GSO packet whose segments exceed the overlay MTU → passed, pod_pass_too_big", () => {
    const big = fromPod(innerIp({ proto: IPPROTO_TCP, size: 3000 }));
    const r = atVeth(big, { gsoSize: 1450 - 39, gsoSegs: 3 });
    expect(r.retval).toBe(TC_ACT_OK);
    expect(r.moved).toEqual({ pod_pass_too_big: 1 });
    expect(hex(r.data)).toBe(hex(big));
  });

  test("with no config yet everything passes, pod_pass_not_ready", () => {
    h.config.update(0, { ...h.cfg, flags: 0 });
    try {
      const pkt = fromPod(innerIp({ proto: IPPROTO_UDP }));
      const r = atVeth(pkt);
      expect(r.retval).toBe(TC_ACT_OK);
      expect(r.moved).toEqual({ pod_pass_not_ready: 1 });
      expect(hex(r.data)).toBe(hex(pkt));
    } finally {
      h.config.update(0, h.cfg);
    }
  });

  /**
   * Every length of a valid frame, cut raw (the IPv4 total length then claims more than
   * the frame: malformed) or with the IPv4 length and checksum matching the cut (a valid
   * IPv4 packet whose payload ends early: the kernel would forward it, and so it is
   * encapsulated). A test run refuses frames shorter than Ethernet + IPv4 with EINVAL, as
   * the kernel never hands TC such an IPv4 frame.
   */
  for (const fixLengths of [false, true]) {
    test(`truncated at every length (${fixLengths ? "IPv4 length matches the cut" : "raw cut"})`, () => {
      const whole = fromPod(innerIp({ proto: IPPROTO_TCP, size: 32 }));
      for (let n = 0; n < whole.length; n++) {
        const pkt = whole.slice(0, n);
        if (fixLengths && n >= 34) {
          new DataView(pkt.buffer).setUint16(16, n - 14);
          pkt.fill(0, 24, 26);
          const c = checksum(pkt.subarray(14, 34));
          pkt[24] = c >> 8;
          pkt[25] = c & 255;
        }
        if (n < 34) {
          let err: unknown = null;
          try {
            atVeth(pkt);
          } catch (e) {
            err = e;
          }
          expect({ n, einval: err instanceof BpfError && err.is("EINVAL") }).toEqual({ n, einval: true });
          continue;
        }
        const r = atVeth(pkt);
        if (fixLengths) {
          expect({ n, verdict: r.retval, moved: r.moved }).toEqual({
            n,
            verdict: TC_ACT_REDIRECT,
            moved: { pod_encap_ok: 1 },
          });
          expect(r.data.length).toBe(n + 50);
        } else {
          expect({ n, verdict: r.retval, moved: r.moved }).toEqual({
            n,
            verdict: TC_ACT_OK,
            moved: { pod_pass_malformed: 1 },
          });
          expect(hex(r.data)).toBe(hex(pkt));
        }
      }
    });
  }
});

/** The three encapsulating programs, each counting in its own block. */
const PROGS = [
  ["encapPod", "pod_encap_ok", "pod_encap_ok_neigh", "pod_drop_fib", "pod_drop_adjust"],
  ["encapFwd", "encap_ok", "encap_ok_neigh", "encap_drop_fib", "encap_drop_adjust"],
  ["encapHost", "host_encap_ok", "host_encap_ok_neigh", "host_drop_fib", "host_drop_adjust"],
] as const;

/** Runs one of them as on its attach point (the pod program on the fixture pod's veth). */
function runProg(
  prog: (typeof PROGS)[number][0],
  pkt: Uint8Array,
  skb: { gsoSize?: number; gsoSegs?: number } = {},
) {
  return runCounted(h, h.prog[prog], pkt, { ifindex: h.podIfindex, ...skb });
}

describe("the next hop, as every encapsulating program finds it", () => {
  const remote = { prefixLen: 24, addr: parseIp4("198.19.9.0")! };
  const toNode = (nodeIp: string) =>
    h.subnets.update(remote, { nodeIp: parseIp4(nodeIp)!, vtepMac: FX.remoteVtepMac, flags: 0 });
  const pkt = fromPod(innerIp({ proto: IPPROTO_UDP, dst: "198.19.9.9" }));
  afterAll(() => {
    h.subnets.delete(remote);
  });

  for (const [prog, ok, okNeigh, dropFib] of PROGS) {
    test(`${prog}: a known neighbour → its MAC on the outer frame, ${ok}`, () => {
      toNode(FX.remoteIp);
      const r = runProg(prog, pkt);
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ [ok]: 1 });
      const macs = ethernet({ dst: FX.remoteUnderlayMac, src: FX.underlayMac, type: 0 }, new Uint8Array());
      expect(hex(r.data.subarray(0, 12))).toBe(hex(macs.subarray(0, 12)));
    });

    test(`${prog}: no neighbour yet → the kernel resolves it (bpf_redirect_neigh), ${okNeigh}`, () => {
      toNode(FX.noNeighNodeIp);
      const r = runProg(prog, pkt);
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ [okNeigh]: 1 });
      // the outer destination is the node; the neighbour output fills the MACs
      expect(Array.from(r.data.subarray(14 + 16, 14 + 20)).join(".")).toBe(FX.noNeighNodeIp);
    });

    test(`${prog}: the node is routed to a blackhole → dropped, ${dropFib}`, () => {
      toNode(FX.blackholeNodeIp);
      const r = runProg(prog, pkt);
      expect(r.retval).toBe(TC_ACT_SHOT);
      expect(r.moved).toEqual({ [dropFib]: 1 });
    });
  }
});

describe("the next-hop cache (tartan_nexthops)", () => {
  const node = parseIp4(FX.remoteIp)!;
  const pkt = fromPod(innerIp({ proto: IPPROTO_UDP }));
  const FAKE = "02:ee:ee:ee:ee:01";

  test("a successful lookup is cached: the node's next hop, its MAC and ours, and when; a hit leaves it as it is", () => {
    h.nexthops.delete(node);
    expect(atVeth(pkt).retval).toBe(TC_ACT_REDIRECT);
    const nh = h.nexthops.lookup(node)!;
    expect({ ...nh, checkedNs: 0n }).toEqual({
      ifindex: h.underlayIfindex,
      dmac: FX.remoteUnderlayMac,
      smac: FX.underlayMac,
      checkedNs: 0n,
    });
    expect(nh.checkedNs).toBeGreaterThan(0n);
    expect(atVeth(pkt).retval).toBe(TC_ACT_REDIRECT);
    expect(h.nexthops.lookup(node)).toEqual(nh);
  });

  test("while fresh, the cached answer is used (no lookup): a changed MAC in the cache goes on the wire", () => {
    const nh = h.nexthops.lookup(node)!;
    h.nexthops.update(node, { ...nh, dmac: FAKE });
    try {
      const r = atVeth(pkt);
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ pod_encap_ok: 1 });
      expect(macString(r.data.subarray(0, 6))).toBe(FAKE);
    } finally {
      h.nexthops.delete(node);
    }
  });

  test(`older than ${NEXTHOP_TTL_NS / 1e9} s, it is looked up again and refreshed`, () => {
    h.nexthops.update(node, { ifindex: h.underlayIfindex, dmac: FAKE, smac: FX.underlayMac, checkedNs: 0n });
    const r = atVeth(pkt);
    expect(macString(r.data.subarray(0, 6))).toBe(FX.remoteUnderlayMac);
    const nh = h.nexthops.lookup(node)!;
    expect(nh.dmac).toBe(FX.remoteUnderlayMac);
    expect(nh.checkedNs).toBeGreaterThan(0n);
  });

  test("a stale entry whose neighbour is gone is dropped from the cache; the kernel resolves the next hop", () => {
    const gone = parseIp4(FX.noNeighNodeIp)!;
    const remote = { prefixLen: 24, addr: parseIp4("198.19.9.0")! };
    h.subnets.update(remote, { nodeIp: gone, vtepMac: FX.remoteVtepMac, flags: 0 });
    h.nexthops.update(gone, { ifindex: h.underlayIfindex, dmac: FAKE, smac: FX.underlayMac, checkedNs: 0n });
    try {
      const r = atVeth(fromPod(innerIp({ proto: IPPROTO_UDP, dst: "198.19.9.9" })));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ pod_encap_ok_neigh: 1 });
      expect(h.nexthops.lookup(gone)).toBeNull();
    } finally {
      h.subnets.delete(remote);
    }
  });
});

describe("a packet the kernel will not grow", () => {
  // a test run cannot set gso_type: a GSO packet that fits the overlay then looks like GSO of
  // a kind bpf_skb_adjust_room refuses to grow (not TCP, not fixed-size UDP GSO)
  for (const [prog, , , , dropAdjust] of PROGS) {
    test(`${prog}: bpf_skb_adjust_room refuses → dropped, ${dropAdjust}`, () => {
      const pkt = fromPod(innerIp({ proto: IPPROTO_TCP, size: 2000 }));
      const r = runProg(prog, pkt, { gsoSize: 1000, gsoSegs: 2 });
      expect(r.retval).toBe(TC_ACT_SHOT);
      expect(r.moved).toEqual({ [dropAdjust]: 1 });
    });
  }
});
