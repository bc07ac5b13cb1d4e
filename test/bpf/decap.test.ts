/**
 * Decapsulation in TC and in XDP, packet by packet through BPF_PROG_TEST_RUN: a valid
 * frame comes out as exactly the inner packet; everything else gets its documented
 * verdict (pass untouched or drop) and moves exactly one counter, the right one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BpfError } from "../../src/bpf/errors.ts";
import { testRun } from "../../src/bpf/test-run.ts";
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
  icmpEcho,
  ipv4,
  ipv6,
  pattern,
  tcp,
  udp,
  vxlan,
  withIpv4TotalLength,
} from "../helpers/packet.ts";
import {
  delta,
  FX,
  type Harness,
  setupHarness,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  XDP_DROP,
  XDP_PASS,
} from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await setupHarness();
});
afterAll(async () => {
  await h?.close();
});

function inner(dst: string = FX.podIp, size = 56): Uint8Array {
  return ipv4(
    { src: FX.remotePodIp, dst, proto: IPPROTO_ICMP, ttl: 63, id: 0x4242, df: true },
    icmpEcho({ id: 9, seq: 3 }, pattern(size)),
  );
}

interface FrameOpts {
  inner?: Uint8Array;
  innerType?: number;
  vni?: number;
  vxFlags?: number;
  dport?: number;
  src?: string;
  dst?: string;
  proto?: number;
  options?: Uint8Array;
  mf?: boolean;
  fragOffset?: number;
  vlan?: number;
  /** Fill in the outer UDP checksum, as flannel.1 (udpcsum) does. */
  udpCsum?: boolean;
}

/** A VXLAN frame as a remote node (or flanneld) sends it to us. */
function frame(o: FrameOpts = {}): Uint8Array {
  const innerEth = ethernet(
    { dst: FX.vtepMac, src: FX.remoteVtepMac, type: o.innerType ?? ETH_P_IP },
    o.inner ?? inner(),
  );
  const vx = vxlan(o.vni ?? FX.vni, innerEth, o.vxFlags ?? 0x08);
  const src = o.src ?? FX.remoteIp;
  const dst = o.dst ?? FX.localIp;
  const l4 =
    o.proto === IPPROTO_TCP
      ? tcp({ sport: 40000, dport: o.dport ?? FX.port, src, dst }, vx)
      : udp(
          o.udpCsum
            ? { sport: 40001, dport: o.dport ?? FX.port, src, dst }
            : { sport: 40001, dport: o.dport ?? FX.port },
          vx,
        );
  const ip = ipv4(
    {
      src,
      dst,
      proto: o.proto ?? IPPROTO_UDP,
      id: 77,
      options: o.options,
      mf: o.mf,
      fragOffset: o.fragOffset,
    },
    l4,
  );
  return ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IP, vlan: o.vlan }, ip);
}

type Mode = "tc" | "xdp";
const PASS = { tc: TC_ACT_OK, xdp: XDP_PASS };
const DROP = { tc: TC_ACT_SHOT, xdp: XDP_DROP };

function run(mode: Mode, pkt: Uint8Array) {
  const before = h.snapshot();
  const r = testRun(mode === "tc" ? h.prog.decapTc : h.prog.decapXdp, {
    data: pkt,
    skb: mode === "tc" ? {} : undefined,
  });
  return { ...r, moved: delta(before, h.snapshot()) };
}

function forwarded(ip: Uint8Array): Uint8Array {
  const out = new Uint8Array(ip);
  out[8] = out[8]! - 1;
  out[10] = 0;
  out[11] = 0;
  const c = checksum(out.subarray(0, 20));
  out[10] = c >> 8;
  out[11] = c & 255;
  return out;
}

for (const mode of ["tc", "xdp"] as const) {
  describe(`decap ${mode}`, () => {
    test("a valid frame for a local address without an endpoint → exactly the inner packet, to the stack", () => {
      const ip = inner("198.19.1.9");
      const r = run(mode, frame({ inner: ip }));
      expect(r.retval).toBe(PASS[mode]);
      expect(r.moved).toEqual({ decap_stack: 1 });
      expect(hex(r.data)).toBe(
        hex(ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IP }, ip)),
      );
    });

    test("a frame with an outer UDP checksum (flannel.1's default) is accepted too", () => {
      const ip = inner("198.19.1.9");
      const r = run(mode, frame({ inner: ip, udpCsum: true }));
      expect(r.retval).toBe(PASS[mode]);
      expect(r.moved).toEqual({ decap_stack: 1 });
      expect(hex(r.data)).toBe(
        hex(ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IP }, ip)),
      );
    });

    if (mode === "tc") {
      test("a valid frame for a known pod → redirected into the pod's veth, MACs and TTL as forwarding sets them", () => {
        const ip = inner(FX.podIp, 1000);
        const r = run(mode, frame({ inner: ip }));
        expect(r.retval).toBe(TC_ACT_REDIRECT);
        expect(r.moved).toEqual({ decap_redirect_peer: 1 });
        expect(hex(r.data)).toBe(
          hex(ethernet({ dst: FX.podMac, src: FX.gwMac, type: ETH_P_IP }, forwarded(ip))),
        );
      });
    } else {
      test("a valid frame for a known pod still goes to the stack (no XDP redirect into veths)", () => {
        const ip = inner(FX.podIp);
        const r = run(mode, frame({ inner: ip }));
        expect(r.retval).toBe(XDP_PASS);
        expect(r.moved).toEqual({ decap_stack: 1 });
        expect(hex(r.data)).toBe(
          hex(ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IP }, ip)),
        );
      });
    }

    const cases: Array<[string, () => Uint8Array, "pass" | "drop", string]> = [
      ["another VNI", () => frame({ vni: 2 }), "pass", "decap_pass_other_vni"],
      ["UDP to another port", () => frame({ dport: 4789 }), "pass", "decap_pass_other_port"],
      ["VXLAN to another address", () => frame({ dst: "198.18.0.9" }), "pass", "decap_pass_other_dst"],
      ["TCP to the VXLAN port", () => frame({ proto: IPPROTO_TCP }), "pass", "decap_pass_not_udp"],
      [
        "outer IPv4 options",
        () => frame({ options: Uint8Array.of(1, 1, 1, 0) }),
        "pass",
        "decap_pass_ip_options",
      ],
      // one IPv4 rule for every header (bpf/include/parsing.h): total length ≥ header length
      [
        "outer IPv4 total length shorter than its header",
        () => withIpv4TotalLength(frame(), 14, 16),
        "pass",
        "decap_pass_malformed",
      ],
      // a malformed header is malformed before its options are looked at
      [
        "outer IPv4 options and a total length beyond the frame",
        () => withIpv4TotalLength(frame({ options: Uint8Array.of(1, 1, 1, 0) }), 14, 1400),
        "pass",
        "decap_pass_malformed",
      ],
      ["outer first fragment (MF)", () => frame({ mf: true }), "pass", "decap_pass_fragment"],
      ["outer later fragment (offset)", () => frame({ fragOffset: 185 }), "pass", "decap_pass_fragment"],
      ["VLAN-tagged", () => frame({ vlan: 100 }), "pass", "decap_pass_not_ipv4"],
      [
        "IPv6",
        () =>
          ethernet(
            { dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IPV6 },
            ipv6(
              { src: new Uint8Array(16), dst: new Uint8Array(16), next: IPPROTO_UDP },
              udp({ sport: 1, dport: FX.port }, pattern(60)),
            ),
          ),
        "pass",
        "decap_pass_not_ipv4",
      ],
      [
        "ARP",
        () => ethernet({ dst: "ff:ff:ff:ff:ff:ff", src: FX.remoteUnderlayMac, type: ETH_P_ARP }, pattern(28)),
        "pass",
        "decap_pass_not_ipv4",
      ],
      ["VXLAN from a non-member", () => frame({ src: "198.18.0.66" }), "drop", "decap_drop_non_member"],
      ["VXLAN without the I flag", () => frame({ vxFlags: 0 }), "drop", "decap_drop_bad_vxlan"],
      [
        "inner frame not IPv4",
        () => frame({ innerType: ETH_P_ARP, inner: pattern(28) }),
        "drop",
        "decap_drop_inner_not_ipv4",
      ],
      [
        "inner IPv4 total length shorter than its header",
        () => frame({ inner: withIpv4TotalLength(inner(), 0, 16) }),
        "drop",
        "decap_drop_inner_malformed",
      ],
      [
        "inner destination outside our subnet",
        () => frame({ inner: inner(FX.remotePodIp) }),
        "drop",
        "decap_drop_not_local",
      ],
      [
        "inner destination outside the network",
        () => frame({ inner: inner("8.8.8.8") }),
        "drop",
        "decap_drop_not_local",
      ],
    ];
    for (const [name, build, verdict, counter] of cases) {
      test(`${name} → ${verdict}, ${counter}`, () => {
        const pkt = build();
        const r = run(mode, pkt);
        expect(r.retval).toBe(verdict === "pass" ? PASS[mode] : DROP[mode]);
        expect(r.moved).toEqual({ [counter]: 1 });
        if (verdict === "pass") expect(hex(r.data)).toBe(hex(pkt));
      });
    }

    test("with no config yet everything passes untouched", () => {
      h.config.update(0, { ...h.cfg, flags: 0 });
      try {
        const pkt = frame();
        const r = run(mode, pkt);
        expect(r.retval).toBe(PASS[mode]);
        expect(r.moved).toEqual({ decap_pass_not_ready: 1 });
        expect(hex(r.data)).toBe(hex(pkt));
      } finally {
        h.config.update(0, h.cfg);
      }
    });

    /**
     * Every length 0..100 of a valid frame. The kernel never hands a program a frame
     * shorter than an Ethernet header (nor, in TC, an IPv4 frame shorter than an IPv4
     * header): BPF_PROG_TEST_RUN refuses those with EINVAL, as asserted.
     */
    function truncated(n: number, fixLengths: boolean): Uint8Array {
      const full = frame();
      const cut = new Uint8Array(full.subarray(0, n));
      if (fixLengths && n >= 18) new DataView(cut.buffer).setUint16(16, n - 14);
      if (fixLengths && n >= 40) new DataView(cut.buffer).setUint16(38, n - 34);
      if (fixLengths && n >= 34) {
        cut[24] = 0;
        cut[25] = 0;
        const c = checksum(cut.subarray(14, 34));
        cut[24] = c >> 8;
        cut[25] = c & 255;
      }
      return cut;
    }

    function expectedTruncated(n: number, fixLengths: boolean): [string, "pass" | "drop"] | "einval" {
      if (n < 14 || (mode === "tc" && n < 34)) return "einval";
      if (n < 34) return ["decap_pass_malformed", "pass"];
      if (!fixLengths) return ["decap_pass_malformed", "pass"]; // outer total length beyond the frame
      if (n < 42) return ["decap_pass_malformed", "pass"]; // UDP header cut
      if (n < 50) return ["decap_drop_bad_vxlan", "drop"];
      return ["decap_drop_inner_malformed", "drop"]; // inner Ethernet/IPv4 cut, or inner length beyond the frame
    }

    for (const fixLengths of [false, true]) {
      test(`truncated at every length 0..100 (${fixLengths ? "outer lengths match the cut" : "raw cut"})`, () => {
        for (let n = 0; n <= 100; n++) {
          const pkt = truncated(n, fixLengths);
          const want = expectedTruncated(n, fixLengths);
          if (want === "einval") {
            let err: unknown = null;
            try {
              run(mode, pkt);
            } catch (e) {
              err = e;
            }
            expect({ n, einval: err instanceof BpfError && err.is("EINVAL") }).toEqual({ n, einval: true });
            continue;
          }
          const r = run(mode, pkt);
          const [counter, verdict] = want;
          expect({ n, verdict: r.retval, moved: r.moved }).toEqual({
            n,
            verdict: verdict === "pass" ? PASS[mode] : DROP[mode],
            moved: { [counter]: 1 },
          });
          if (verdict === "pass") expect(hex(r.data)).toBe(hex(pkt));
        }
      });
    }
  });
}
