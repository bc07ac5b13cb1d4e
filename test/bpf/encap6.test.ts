/**
 * Dual stack: VXLAN over IPv6 from the encapsulating programs, packet by packet through
 * BPF_PROG_TEST_RUN. The frame is byte for byte what the kernel's flannel-v6 device sends
 * (checked against rules and against a frame captured from a real one, but for the UDP
 * source port, which the kernel derives from its own hash seed), the outer UDP checksum
 * is right — also when the inner TCP checksum is still left to the offload, behind
 * extension headers and for fragments — and never zero; every verdict and the counter it
 * moves, GSO packets to the overlay device.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testRun } from "../../src/bpf/test-run.ts";
import { ETH_P_IPV6, ethernet, hex, IPPROTO_TCP, IPPROTO_UDP } from "../helpers/packet.ts";
import { runCounted } from "./frames.ts";
import {
  completed6,
  forwarded6,
  fragments6,
  fromPod6,
  IPPROTO_ICMPV6,
  innerIp6,
  ip6Header,
  kernelVxlan6Frame,
  NEXTHDR_DEST,
  NEXTHDR_HOP,
  NEXTHDR_ROUTING,
  outerUdp6Valid,
  pseudo6,
  withExtHeaders,
} from "./frames6.ts";
import { FX, type Harness, ip6Of, setupHarness, TC_ACT_OK, TC_ACT_REDIRECT } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await setupHarness({ ipv6: true });
});
afterAll(async () => {
  await h?.close();
});

const run = (prog: number, pkt: Uint8Array, skb = {}) => runCounted(h, prog, pkt, skb);

describe("IPv6 encap (pod traffic, TC ingress of the bridge)", () => {
  for (const [name, proto] of [
    ["TCP", IPPROTO_TCP],
    ["UDP", IPPROTO_UDP],
    ["ICMPv6", IPPROTO_ICMPV6],
  ] as const) {
    test(`${name} to a remote IPv6 subnet becomes flannel-v6's VXLAN frame, with a valid UDP checksum`, () => {
      const inner = innerIp6({ proto });
      const r = run(h.prog.encapFwd, fromPod6(inner));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(r.moved).toEqual({ encap6_ok: 1 });
      expect(hex(r.data)).toBe(hex(kernelVxlan6Frame(forwarded6(inner), r.data)));
      expect(outerUdp6Valid(r.data)).toBe(true);
      const sport = new DataView(r.data.buffer).getUint16(14 + 40);
      expect(sport).toBeGreaterThanOrEqual(32768);
      expect(sport).toBeLessThan(60999);
    });
  }

  test("an inner TCP checksum left to the offload (CHECKSUM_PARTIAL): the outer one is right once it is finished", () => {
    for (const size of [0, 1, 56, 1000, 1357]) {
      const inner = innerIp6({ proto: IPPROTO_TCP, partial: true, size });
      const r = run(h.prog.encapFwd, fromPod6(inner));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      // what the wire carries after the offload fills in the inner checksum
      const wire = new Uint8Array(r.data);
      wire.set(completed6(wire.subarray(84)), 84);
      expect({ size, valid: outerUdp6Valid(wire) }).toEqual({ size, valid: true });
      expect(hex(wire)).toBe(hex(kernelVxlan6Frame(completed6(forwarded6(inner)), r.data)));
    }
  });

  test("odd and even lengths, every size from 0 to 64 bytes of payload: the checksum is always right", () => {
    for (let size = 0; size <= 64; size++) {
      const r = run(h.prog.encapFwd, fromPod6(innerIp6({ proto: IPPROTO_UDP, size })));
      expect({ size, verdict: r.retval, valid: outerUdp6Valid(r.data) }).toEqual({
        size,
        verdict: TC_ACT_REDIRECT,
        valid: true,
      });
    }
  });

  test("host traffic (overlay device) is encapsulated without a hop-limit change, in host6_*", () => {
    const inner = innerIp6({ proto: IPPROTO_TCP, src: "fd00:19:0:1::" });
    const r = run(h.prog.encapHost, fromPod6(inner));
    expect(r.retval).toBe(TC_ACT_REDIRECT);
    expect(r.moved).toEqual({ host6_encap_ok: 1 });
    expect(hex(r.data)).toBe(hex(kernelVxlan6Frame(inner, r.data)));
  });

  test("ECN is inherited by the outer traffic class, CE as ECT(0); the rest of it is not", () => {
    for (const [tclass, outer] of [
      [0xb8 | 1, 1],
      [0xb8 | 2, 2],
      [0xb8 | 3, 2],
    ] as const) {
      const r = run(h.prog.encapFwd, fromPod6(innerIp6({ proto: IPPROTO_UDP, tclass })));
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      const first = new DataView(r.data.buffer).getUint32(14);
      expect(first).toBe(((6 << 28) | (outer << 20)) >>> 0);
      expect(outerUdp6Valid(r.data)).toBe(true);
    }
  });

  test("the source port is stable for one flow and varies across flows", () => {
    const sportOf = (src: string) =>
      new DataView(
        run(h.prog.encapFwd, fromPod6(innerIp6({ proto: IPPROTO_UDP, src }))).data.buffer,
      ).getUint16(54);
    expect(sportOf(FX.podIp6)).toBe(sportOf(FX.podIp6));
    const ports = new Set(
      Array.from({ length: 16 }, (_, i) => sportOf(`fd00:19:0:1::${(i + 10).toString(16)}`)),
    );
    expect(ports.size).toBeGreaterThan(8);
  });

  test("a node without a neighbour yet goes through bpf_redirect_neigh; a blackholed one is dropped", () => {
    const r6 = ip6Of(FX.remoteSubnet6.replace("/64", ""));
    try {
      for (const [node, verdict, counter] of [
        [FX.noNeighNodeIp6, TC_ACT_REDIRECT, "encap6_ok_neigh"],
        [FX.blackholeNodeIp6, 2, "encap6_drop_fib"],
      ] as const) {
        h.subnets6.update(
          { prefixLen: 64, addr: r6 },
          { nodeIp6: ip6Of(node), vtepMac: FX.remoteVtepMac, flags: 0 },
        );
        const r = run(h.prog.encapFwd, fromPod6(innerIp6({ proto: IPPROTO_UDP })));
        expect({ verdict: r.retval, moved: r.moved }).toEqual({ verdict, moved: { [counter]: 1 } });
      }
    } finally {
      h.subnets6.update(
        { prefixLen: 64, addr: r6 },
        { nodeIp6: ip6Of(FX.remoteIp6), vtepMac: FX.remoteVtepMac, flags: 0 },
      );
    }
  });
});

describe("IPv6 with extension headers and fragments: encapsulated as flannel-v6 carries them", () => {
  const cases: Array<[string, Uint8Array]> = [
    ["hop-by-hop + UDP", withExtHeaders(innerIp6({ proto: IPPROTO_UDP }), [NEXTHDR_HOP])],
    ["destination options + TCP", withExtHeaders(innerIp6({ proto: IPPROTO_TCP }), [NEXTHDR_DEST])],
    [
      "hop-by-hop + routing (no segments left) + destination options + ICMPv6",
      withExtHeaders(innerIp6({ proto: IPPROTO_ICMPV6 }), [NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_DEST]),
    ],
    [
      "no next header after destination options",
      withExtHeaders(ip6Header({ src: FX.podIp6, dst: FX.remotePodIp6, next: 59 }, 0), [NEXTHDR_DEST]),
    ],
    ...fragments6(innerIp6({ proto: IPPROTO_UDP, size: 3000 }), 1430).map(
      (f, i) => [`UDP fragment ${i + 1} of 3`, f] as [string, Uint8Array],
    ),
    ...fragments6(withExtHeaders(innerIp6({ proto: IPPROTO_TCP, size: 2001 }), [NEXTHDR_DEST]), 1430).map(
      (f, i) =>
        [`fragment ${i + 1} of 2 of an odd-sized TCP segment behind destination options`, f] as [
          string,
          Uint8Array,
        ],
    ),
  ];
  for (const [name, inner] of cases)
    test(`${name}: flannel-v6's frame, valid outer UDP checksum, encap6_ok`, () => {
      const r = run(h.prog.encapFwd, fromPod6(inner));
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: TC_ACT_REDIRECT,
        moved: { encap6_ok: 1 },
      });
      expect(hex(r.data)).toBe(hex(kernelVxlan6Frame(forwarded6(inner), r.data)));
      expect(outerUdp6Valid(r.data)).toBe(true);
    });

  test("every payload size from 0 to 300 bytes, behind destination options and as a fragment: the checksum is always right", () => {
    for (let size = 0; size <= 300; size++)
      for (const inner of [
        withExtHeaders(innerIp6({ proto: IPPROTO_UDP, size }), [NEXTHDR_DEST]),
        fragments6(innerIp6({ proto: IPPROTO_UDP, size: size + 1400 }), 1430)[1]!,
      ]) {
        const r = run(h.prog.encapFwd, fromPod6(inner));
        expect({ size, verdict: r.retval, valid: outerUdp6Valid(r.data) }).toEqual({
          size,
          verdict: TC_ACT_REDIRECT,
          valid: true,
        });
      }
  });

  test("TCP behind extension headers with its checksum left to the offload: the outer one is right once it is finished", () => {
    for (const size of [0, 1, 56, 1000, 1333])
      for (const types of [[NEXTHDR_DEST], [NEXTHDR_HOP, NEXTHDR_DEST]]) {
        const inner = withExtHeaders(innerIp6({ proto: IPPROTO_TCP, partial: true, size }), types);
        const r = run(h.prog.encapFwd, fromPod6(inner));
        expect(r.retval).toBe(TC_ACT_REDIRECT);
        const l4At = 40 + 8 * types.length;
        const wire = new Uint8Array(r.data);
        wire.set(completed6(wire.subarray(84), l4At), 84);
        expect({ size, types, valid: outerUdp6Valid(wire) }).toEqual({ size, types, valid: true });
        expect(hex(wire)).toBe(hex(kernelVxlan6Frame(completed6(forwarded6(inner), l4At), r.data)));
      }
  });

  test("at the pod's veth and at the overlay device too (pod6_encap_ok, host6_encap_ok)", () => {
    const inner = fragments6(
      withExtHeaders(innerIp6({ proto: IPPROTO_UDP, size: 3000 }), [NEXTHDR_HOP]),
      1430,
    )[0]!;
    h.endpoints6.update(ip6Of(FX.podIp6), { ifindex: h.podIfindex, podMac: FX.podMac, gwMac: FX.gwMac });
    try {
      const r = run(h.prog.encapPod, fromPod6(inner), { ifindex: h.podIfindex });
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: TC_ACT_REDIRECT,
        moved: { pod6_encap_ok: 1 },
      });
      expect(hex(r.data)).toBe(hex(kernelVxlan6Frame(forwarded6(inner), r.data)));
    } finally {
      h.endpoints6.delete(ip6Of(FX.podIp6));
    }
    const host = run(h.prog.encapHost, fromPod6(inner));
    expect({ verdict: host.retval, moved: host.moved }).toEqual({
      verdict: TC_ACT_REDIRECT,
      moved: { host6_encap_ok: 1 },
    });
    expect(hex(host.data)).toBe(hex(kernelVxlan6Frame(inner, host.data)));
    expect(outerUdp6Valid(host.data)).toBe(true);
  });
});

describe("IPv6 encap passes what it must not encapsulate", () => {
  const cases: Array<[string, Uint8Array, string]> = [
    [
      "unknown destination",
      fromPod6(innerIp6({ proto: IPPROTO_UDP, dst: "fd00:19:0:9::1" })),
      "encap6_pass_unknown_dst",
    ],
    [
      "destination in our own subnet",
      fromPod6(innerIp6({ proto: IPPROTO_UDP, dst: "fd00:19:0:1::9" })),
      "encap6_pass_local",
    ],
    [
      "hop limit 1 (the stack answers time-exceeded)",
      fromPod6(innerIp6({ proto: IPPROTO_UDP, hopLimit: 1 })),
      "encap6_pass_ttl",
    ],
    [
      "larger than the overlay MTU (the stack answers packet-too-big)",
      fromPod6(innerIp6({ proto: IPPROTO_UDP, size: 1450 - 48 + 1 })),
      "encap6_pass_too_big",
    ],
    [
      "a routing header with segments left (the L4 checksum covers another destination)",
      fromPod6(withExtHeaders(innerIp6({ proto: IPPROTO_UDP }), [NEXTHDR_ROUTING], 1)),
      "encap6_pass_l4",
    ],
    [
      "SCTP (its CRC32c may still be left to the offload)",
      fromPod6(
        (() => {
          const out = new Uint8Array(innerIp6({ proto: IPPROTO_UDP }));
          out[6] = 132;
          return out;
        })(),
      ),
      "encap6_pass_l4",
    ],
    [
      "more extension headers than the program walks",
      fromPod6(withExtHeaders(innerIp6({ proto: IPPROTO_UDP }), Array(9).fill(NEXTHDR_DEST))),
      "encap6_pass_l4",
    ],
    [
      "trailing bytes after the IPv6 packet",
      ethernet(
        { dst: FX.gwMac, src: FX.podMac, type: ETH_P_IPV6 },
        Uint8Array.from([...innerIp6({ proto: IPPROTO_UDP }), 0, 0, 0, 0]),
      ),
      "encap6_pass_l4",
    ],
    [
      "payload length beyond the frame",
      ethernet(
        { dst: FX.gwMac, src: FX.podMac, type: ETH_P_IPV6 },
        ip6Header({ src: FX.podIp6, dst: FX.remotePodIp6, next: IPPROTO_UDP }, 100),
      ),
      "encap6_pass_malformed",
    ],
    [
      "not version 6 behind the IPv6 ethertype",
      (() => {
        const f = fromPod6(innerIp6({ proto: IPPROTO_UDP }));
        f[14] = 0x45;
        return f;
      })(),
      "encap6_pass_malformed",
    ],
  ];
  for (const [name, pkt, counter] of cases)
    test(`${name} → passed unchanged, ${counter}`, () => {
      const r = run(h.prog.encapFwd, pkt);
      expect({ verdict: r.retval, moved: r.moved }).toEqual({ verdict: TC_ACT_OK, moved: { [counter]: 1 } });
      expect(hex(r.data)).toBe(hex(pkt));
    });

  test("a GSO packet whose segments fit goes to the overlay device (hop limit − 1) to be segmented", () => {
    const inner = innerIp6({ proto: IPPROTO_TCP, size: 3000 });
    const r = run(h.prog.encapFwd, fromPod6(inner), { gsoSize: 1450 - 60, gsoSegs: 3 });
    expect({ verdict: r.retval, moved: r.moved }).toEqual({
      verdict: TC_ACT_REDIRECT,
      moved: { encap6_gso: 1 },
    });
    expect(hex(r.data)).toBe(hex(fromPod6(forwarded6(inner))));
  });

  test("a GSO packet whose segments exceed the overlay MTU → passed, encap6_pass_too_big", () => {
    const pkt = fromPod6(innerIp6({ proto: IPPROTO_TCP, size: 3000 }));
    const r = run(h.prog.encapFwd, pkt, { gsoSize: 1450 - 60 + 1, gsoSegs: 3 });
    expect({ verdict: r.retval, moved: r.moved }).toEqual({
      verdict: TC_ACT_OK,
      moved: { encap6_pass_too_big: 1 },
    });
  });

  test("at the overlay device a GSO packet is passed (to be segmented there), host6_gso", () => {
    const pkt = fromPod6(innerIp6({ proto: IPPROTO_TCP, size: 3000 }));
    const r = run(h.prog.encapHost, pkt, { gsoSize: 1450 - 60, gsoSegs: 3 });
    expect({ verdict: r.retval, moved: r.moved }).toEqual({ verdict: TC_ACT_OK, moved: { host6_gso: 1 } });
    expect(hex(r.data)).toBe(hex(pkt));
  });

  test("without dual stack in the config IPv6 passes as before, encap_pass_not_ipv4", () => {
    try {
      h.config.update(0, { ...h.cfg, flags: 1, v6: null });
      const pkt = fromPod6(innerIp6({ proto: IPPROTO_UDP }));
      const r = run(h.prog.encapFwd, pkt);
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: TC_ACT_OK,
        moved: { encap_pass_not_ipv4: 1 },
      });
    } finally {
      h.config.update(0, h.cfg);
    }
  });
});

describe("IPv6 at the pod's veth (tartan_encap_pod, dual stack)", () => {
  const atVeth = (pkt: Uint8Array, skb = {}) => run(h.prog.encapPod, pkt, { ifindex: h.podIfindex, ...skb });
  const withEndpoint = (fn: () => void) => {
    h.endpoints6.update(ip6Of(FX.podIp6), { ifindex: h.podIfindex, podMac: FX.podMac, gwMac: FX.gwMac });
    try {
      fn();
    } finally {
      h.endpoints6.delete(ip6Of(FX.podIp6));
    }
  };

  test("the endpoint's pod, through its gateway, to a remote subnet → flannel-v6's frame, pod6_encap_ok", () =>
    withEndpoint(() => {
      const inner = innerIp6({ proto: IPPROTO_TCP });
      const r = atVeth(fromPod6(inner));
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: TC_ACT_REDIRECT,
        moved: { pod6_encap_ok: 1 },
      });
      expect(hex(r.data)).toBe(hex(kernelVxlan6Frame(forwarded6(inner), r.data)));
      expect(outerUdp6Valid(r.data)).toBe(true);
    }));

  test("a GSO packet goes to the overlay device, pod6_gso", () =>
    withEndpoint(() => {
      const inner = innerIp6({ proto: IPPROTO_TCP, size: 3000 });
      const r = atVeth(fromPod6(inner), { gsoSize: 1450 - 60, gsoSegs: 3 });
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: TC_ACT_REDIRECT,
        moved: { pod6_gso: 1 },
      });
    }));

  test("a pod not in tartan_endpoints6, a spoofed source, another veth, multicast, not to the gateway → passed to the bridge", () =>
    withEndpoint(() => {
      const cases: Array<[Uint8Array, object, string]> = [
        [fromPod6(innerIp6({ proto: IPPROTO_UDP, src: "fd00:19:0:1::9" })), {}, "pod_pass_not_endpoint"],
        [fromPod6(innerIp6({ proto: IPPROTO_UDP })), { ifindex: h.underlayIfindex }, "pod_pass_not_endpoint"],
        [fromPod6(innerIp6({ proto: IPPROTO_UDP }), "33:33:00:00:00:01"), {}, "pod_pass_not_gateway"],
        [fromPod6(innerIp6({ proto: IPPROTO_UDP }), "02:cc:00:00:00:01"), {}, "pod_pass_not_gateway"],
        [fromPod6(innerIp6({ proto: IPPROTO_UDP, dst: "fd00:19:0:1::9" })), {}, "pod6_pass_local"],
        [fromPod6(innerIp6({ proto: IPPROTO_UDP, hopLimit: 1 })), {}, "pod6_pass_ttl"],
      ];
      for (const [pkt, skb, counter] of cases) {
        const r = atVeth(pkt, skb);
        expect({ counter, verdict: r.retval, moved: r.moved }).toEqual({
          counter,
          verdict: TC_ACT_OK,
          moved: { [counter]: 1 },
        });
        expect(hex(r.data)).toBe(hex(pkt));
      }
    }));
});

/** The first packet of a classic pcap file (tcpdump -w). */
function firstPcapPacket(pcap: Uint8Array): Uint8Array {
  const v = new DataView(pcap.buffer, pcap.byteOffset);
  const le = v.getUint32(0, true) === 0xa1b2c3d4;
  const caplen = v.getUint32(24 + 8, le);
  return pcap.slice(24 + 16, 24 + 16 + caplen);
}

describe("IPv6 encap against the kernel's own flannel-v6 device", () => {
  test("the frame equals one captured from flannel-v6.1 for the same inner packet (but for the UDP source port and the checksum, which the kernel leaves to the offload); ours valid", async () => {
    const ns = h.ns;
    const ipn = async (...a: string[]) => {
      const p = Bun.spawn(["ip", "-n", ns, ...a], { stderr: "pipe" });
      if ((await p.exited) !== 0)
        throw new Error(`ip ${a.join(" ")}: ${await new Response(p.stderr).text()}`);
    };
    // flannel-v6.1 as flanneld creates it, with its per-node neighbour, FDB entry and route
    await ipn(
      "link",
      "add",
      "flannel-v6.1",
      "address",
      FX.vtepMac,
      "type",
      "vxlan",
      "id",
      "1",
      "local",
      FX.localIp6,
      "dev",
      "ul0",
      "dstport",
      "8472",
      "nolearning",
    );
    const pcap = `/tmp/tartan-kvx6-${process.pid}.pcap`;
    try {
      await ipn("link", "set", "flannel-v6.1", "mtu", "1430", "up");
      await ipn("addr", "add", "fd00:19:0:1::/128", "dev", "flannel-v6.1", "nodad");
      await ipn(
        "-6",
        "route",
        "add",
        FX.remoteSubnet6,
        "via",
        "fd00:19:0:2::",
        "dev",
        "flannel-v6.1",
        "onlink",
      );
      await ipn(
        "-6",
        "neigh",
        "replace",
        "fd00:19:0:2::",
        "lladdr",
        FX.remoteVtepMac,
        "dev",
        "flannel-v6.1",
        "nud",
        "permanent",
      );
      const fdb = Bun.spawn([
        "ip",
        "netns",
        "exec",
        ns,
        "bridge",
        "fdb",
        "append",
        FX.remoteVtepMac,
        "dev",
        "flannel-v6.1",
        "dst",
        FX.remoteIp6,
      ]);
      expect(await fdb.exited).toBe(0);
      const dump = Bun.spawn(
        [
          "ip",
          "netns",
          "exec",
          ns,
          "tcpdump",
          "-i",
          "ul1",
          "-U",
          "-c",
          "1",
          "-w",
          pcap,
          "ip6",
          "and",
          "udp",
          "port",
          "8472",
        ],
        { stderr: "pipe" },
      );
      const reader = dump.stderr.getReader();
      let seen = "";
      while (!seen.includes("listening on")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`tcpdump: ${seen}`);
        seen += new TextDecoder().decode(value);
      }
      const sender = Bun.spawn(
        ["ip", "netns", "exec", ns, "ping", "-6", "-c", "1", "-W", "1", "-s", "200", FX.remotePodIp6],
        {
          stdout: "ignore",
        },
      );
      await sender.exited;
      await dump.exited;
      // the stderr pipe closed now, not whenever the collector gets to it (datapath.test.ts counts fds)
      await reader.cancel();
      const kernel = firstPcapPacket(await Bun.file(pcap).bytes());
      expect(kernel.length).toBe(14 + 40 + 8 + 8 + 14 + 40 + 8 + 200);
      // the kernel fills the UDP checksum of IPv6 VXLAN (udp6zerocsumtx off), through the
      // offload: captured behind the veth it still holds the pseudo-header sum, not zero
      const kv = new DataView(kernel.buffer);
      const udpLen = kv.getUint16(14 + 40 + 4);
      expect(kv.getUint16(60)).toBe(
        pseudo6(kernel.subarray(22, 38), kernel.subarray(38, 54), udpLen, IPPROTO_UDP),
      );
      // the same inner packet through our program for host traffic (no forwarding hop)
      const inner = kernel.slice(84);
      const r = testRun(h.prog.encapHost, {
        data: ethernet({ dst: FX.gwMac, src: FX.podMac, type: ETH_P_IPV6 }, inner),
        skb: {},
      });
      expect(r.retval).toBe(TC_ACT_REDIRECT);
      expect(outerUdp6Valid(r.data)).toBe(true);
      // the kernel picks the UDP source port from its own hash seed per flow; the checksum covers it
      const mask = (f: Uint8Array) => {
        const c = new Uint8Array(f);
        c.fill(0, 54, 56); // UDP source port
        c.fill(0, 60, 62); // UDP checksum
        return hex(c);
      };
      expect(mask(r.data)).toBe(mask(kernel));
    } finally {
      await ipn("link", "del", "flannel-v6.1").catch(() => {});
      await Bun.file(pcap)
        .delete()
        .catch(() => {});
    }
  }, 20_000);
});
