/**
 * Dual stack: decapsulation of VXLAN over IPv6 in TC and in XDP, packet by packet through
 * BPF_PROG_TEST_RUN. A valid frame from a member comes out as exactly the inner packet
 * (to the stack); everything else gets its documented verdict and moves exactly one
 * counter of the IPv6 block; every truncation of a valid frame is judged; and a frame the
 * kernel's own flannel-v6 device sent is accepted.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BpfError } from "../../src/bpf/errors.ts";
import { testRun } from "../../src/bpf/test-run.ts";
import { parseCidr6 } from "../../src/config/cidr6.ts";
import {
  concat,
  ETH_P_IP,
  ETH_P_IPV6,
  ethernet,
  hex,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  icmpEcho,
  ipv4,
  pattern,
  vxlan,
} from "../helpers/packet.ts";
import { IPPROTO_ICMPV6, innerIp6, ip6Header } from "./frames6.ts";
import {
  delta,
  FX,
  type Harness,
  ip6Of,
  setupHarness,
  TC_ACT_OK,
  TC_ACT_SHOT,
  XDP_DROP,
  XDP_PASS,
} from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await setupHarness({ ipv6: true });
});
afterAll(async () => {
  await h?.close();
});

/** The inner IPv6 packet a remote pod sends to our pod. */
const inner = (dst: string = FX.podIp6) =>
  innerIp6({ proto: IPPROTO_ICMPV6, src: FX.remotePodIp6, dst, hopLimit: 63 });

interface Frame6Opts {
  inner?: Uint8Array;
  innerType?: number;
  vni?: number;
  vxFlags?: number;
  dport?: number;
  src?: string;
  dst?: string;
  next?: number;
}

/** A VXLAN-over-IPv6 frame from the remote node to us (UDP checksum 0: decap does not read it). */
function frame6(o: Frame6Opts = {}): Uint8Array {
  const innerEth = ethernet(
    { dst: FX.vtepMac, src: FX.remoteVtepMac, type: o.innerType ?? ETH_P_IPV6 },
    o.inner ?? inner(),
  );
  const u = concat(new Uint8Array(8), vxlan(o.vni ?? FX.vni, innerEth, o.vxFlags ?? 0x08));
  const v = new DataView(u.buffer);
  v.setUint16(0, 45678);
  v.setUint16(2, o.dport ?? FX.port);
  v.setUint16(4, u.length);
  const ip = ip6Header(
    { src: o.src ?? FX.remoteIp6, dst: o.dst ?? FX.localIp6, next: o.next ?? IPPROTO_UDP },
    u.length,
  );
  return ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IPV6 }, concat(ip, u));
}

type Mode = "tc" | "xdp";
const PASS = { tc: TC_ACT_OK, xdp: XDP_PASS } as const;
const DROP = { tc: TC_ACT_SHOT, xdp: XDP_DROP } as const;

function run(mode: Mode, pkt: Uint8Array) {
  const before = h.snapshot();
  const r = testRun(mode === "tc" ? h.prog.decapTc : h.prog.decapXdp, {
    data: pkt,
    skb: mode === "tc" ? {} : undefined,
  });
  return { ...r, moved: delta(before, h.snapshot()) };
}

for (const mode of ["tc", "xdp"] as const) {
  describe(`IPv6 decap (${mode})`, () => {
    test("valid VXLAN over IPv6 from a member → the inner packet, to the stack", () => {
      const r = run(mode, frame6());
      expect({ verdict: r.retval, moved: r.moved }).toEqual({
        verdict: PASS[mode],
        moved: { decap6_stack: 1 },
      });
      // TC keeps the outer Ethernet header; XDP makes it from the sender's NIC to us
      const eth = ethernet({ dst: FX.underlayMac, src: FX.remoteUnderlayMac, type: ETH_P_IPV6 }, inner());
      expect(hex(r.data)).toBe(hex(eth));
    });

    test(
      mode === "tc"
        ? "a pod in tartan_endpoints6 gets it straight into its veth (bpf_redirect_peer, MACs rewritten, hop limit − 1)"
        : "a pod in tartan_endpoints6 still goes to the stack (no XDP redirect into veths)",
      () => {
        const pod = ip6Of(FX.podIp6);
        h.endpoints6.update(pod, { ifindex: h.podIfindex, podMac: FX.podMac, gwMac: FX.gwMac });
        try {
          const r = run(mode, frame6());
          if (mode === "tc") {
            expect({ verdict: r.retval, moved: r.moved }).toEqual({
              verdict: 7,
              moved: { decap6_redirect_peer: 1 },
            });
            const fwd = new Uint8Array(inner());
            fwd[7] = fwd[7]! - 1;
            expect(hex(r.data)).toBe(hex(ethernet({ dst: FX.podMac, src: FX.gwMac, type: ETH_P_IPV6 }, fwd)));
          } else {
            expect({ verdict: r.retval, moved: r.moved }).toEqual({
              verdict: XDP_PASS,
              moved: { decap6_stack: 1 },
            });
          }
          // hop limit 1 left: the stack answers time-exceeded
          const last = innerIp6({ proto: IPPROTO_ICMPV6, src: FX.remotePodIp6, dst: FX.podIp6, hopLimit: 1 });
          const r1 = run(mode, frame6({ inner: last }));
          expect({ verdict: r1.retval, moved: r1.moved }).toEqual({
            verdict: PASS[mode],
            moved: { decap6_stack: 1 },
          });
        } finally {
          h.endpoints6.delete(pod);
        }
      },
    );

    const cases: Array<[string, Uint8Array, string, "pass" | "drop"]> = [
      ["from a node that is not a member", frame6({ src: "fd00:18::99" }), "decap6_drop_non_member", "drop"],
      ["another VNI", frame6({ vni: 2 }), "decap6_pass_other_vni", "pass"],
      ["another UDP port", frame6({ dport: 4789 }), "decap6_pass_other_port", "pass"],
      ["to another address of ours", frame6({ dst: "fd00:18::77" }), "decap6_pass_other_dst", "pass"],
      ["not UDP", frame6({ next: IPPROTO_TCP }), "decap6_pass_not_udp", "pass"],
      ["an extension header first (hop-by-hop)", frame6({ next: 0 }), "decap6_pass_ext_headers", "pass"],
      ["an outer fragment", frame6({ next: 44 }), "decap6_pass_ext_headers", "pass"],
      ["VXLAN without the I flag", frame6({ vxFlags: 0 }), "decap6_drop_bad_vxlan", "drop"],
      [
        "an inner IPv4 packet (IPv4 crosses the IPv4 underlay)",
        frame6({
          innerType: ETH_P_IP,
          inner: ipv4(
            { src: FX.remotePodIp, dst: FX.podIp, proto: IPPROTO_ICMP, ttl: 63 },
            icmpEcho({ id: 1, seq: 1 }, pattern(8)),
          ),
        }),
        "decap6_drop_inner_not_ipv6",
        "drop",
      ],
      [
        "an inner destination outside our subnet (no relaying)",
        frame6({ inner: inner("fd00:19:0:2::9") }),
        "decap6_drop_not_local",
        "drop",
      ],
      [
        "an inner destination outside the network",
        frame6({ inner: inner("2001:db8::1") }),
        "decap6_drop_not_local",
        "drop",
      ],
      [
        "an inner payload length beyond the frame",
        frame6({
          inner: (() => {
            const i = inner();
            new DataView(i.buffer).setUint16(4, 1000);
            return i;
          })(),
        }),
        "decap6_drop_inner_malformed",
        "drop",
      ],
      [
        "an inner version that is not 6",
        frame6({
          inner: (() => {
            const i = inner();
            i[0] = 0x45;
            return i;
          })(),
        }),
        "decap6_drop_inner_malformed",
        "drop",
      ],
      [
        "an outer payload length beyond the frame",
        (() => {
          const f = frame6();
          new DataView(f.buffer).setUint16(18, 2000);
          return f;
        })(),
        "decap6_pass_malformed",
        "pass",
      ],
    ];
    for (const [name, pkt, counter, verdict] of cases)
      test(`${name} → ${verdict}, ${counter}`, () => {
        const r = run(mode, pkt);
        expect({ verdict: r.retval, moved: r.moved }).toEqual({
          verdict: verdict === "pass" ? PASS[mode] : DROP[mode],
          moved: { [counter]: 1 },
        });
        if (verdict === "pass") expect(hex(r.data)).toBe(hex(pkt));
      });

    test("without dual stack in the config VXLAN over IPv6 passes untouched, decap_pass_not_ipv4", () => {
      try {
        h.config.update(0, { ...h.cfg, flags: 1, v6: null });
        const pkt = frame6();
        const r = run(mode, pkt);
        expect({ verdict: r.retval, moved: r.moved }).toEqual({
          verdict: PASS[mode],
          moved: { decap_pass_not_ipv4: 1 },
        });
        expect(hex(r.data)).toBe(hex(pkt));
      } finally {
        h.config.update(0, h.cfg);
      }
    });

    /**
     * Every length of a valid frame. BPF_PROG_TEST_RUN refuses frames shorter than an
     * Ethernet header (and, in TC, an IPv6 frame shorter than an IPv6 header) with
     * EINVAL, as asserted: the kernel never hands a program one.
     */
    function truncated(n: number, fixLengths: boolean): Uint8Array {
      const cut = new Uint8Array(frame6().subarray(0, n));
      const v = new DataView(cut.buffer);
      if (fixLengths && n >= 54) v.setUint16(18, n - 54);
      if (fixLengths && n >= 60) v.setUint16(58, n - 54);
      return cut;
    }

    function expected(n: number, fixLengths: boolean): [string, "pass" | "drop"] | "einval" {
      if (n < 14 || (mode === "tc" && n < 54)) return "einval";
      if (n < 54 || !fixLengths) return ["decap6_pass_malformed", "pass"];
      if (n < 62) return ["decap6_pass_malformed", "pass"]; // UDP header cut
      if (n < 70) return ["decap6_drop_bad_vxlan", "drop"];
      return ["decap6_drop_inner_malformed", "drop"]; // inner Ethernet/IPv6 cut, or inner length beyond the frame
    }

    for (const fixLengths of [false, true])
      test(`truncated at every length short of the whole frame (${fixLengths ? "outer lengths match the cut" : "raw cut"})`, () => {
        const full = frame6().length;
        for (let n = 0; n < full; n++) {
          const pkt = truncated(n, fixLengths);
          const want = expected(n, fixLengths);
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
  });
}

/** The first packet of a classic pcap file (tcpdump -w). */
function firstPcapPacket(pcap: Uint8Array): Uint8Array {
  const v = new DataView(pcap.buffer, pcap.byteOffset);
  const le = v.getUint32(0, true) === 0xa1b2c3d4;
  const caplen = v.getUint32(24 + 8, le);
  return pcap.slice(24 + 16, 24 + 16 + caplen);
}

describe("IPv6 decap of what the kernel's flannel-v6 device sends", () => {
  test("a frame captured from flannel-v6.1 is decapsulated on the receiving node's config", async () => {
    const ns = h.ns;
    const ipn = async (...a: string[]) => {
      const p = Bun.spawn(["ip", "-n", ns, ...a], { stderr: "pipe" });
      if ((await p.exited) !== 0)
        throw new Error(`ip ${a.join(" ")}: ${await new Response(p.stderr).text()}`);
    };
    // a flanneld node at FX.localIp6 sending to a pod of the node at FX.remoteIp6 ...
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
    const pcap = `/tmp/tartan-kvx6d-${process.pid}.pcap`;
    const l6 = parseCidr6(FX.localSubnet6)!;
    const r6 = parseCidr6(FX.remoteSubnet6)!;
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
        ["ip", "netns", "exec", ns, "ping", "-6", "-c", "1", "-W", "1", "-s", "100", FX.remotePodIp6],
        {
          stdout: "ignore",
        },
      );
      await sender.exited;
      await dump.exited;
      // the stderr pipe closed now, not whenever the collector gets to it (datapath.test.ts counts fds)
      await reader.cancel();
      const kernel = firstPcapPacket(await Bun.file(pcap).bytes());
      // ... received by us as that node: our address, its subnet ours, the sender a member
      h.config.update(0, { ...h.cfg, v6: { ...h.cfg.v6!, localIp6: ip6Of(FX.remoteIp6) } });
      h.subnets6.update(
        { prefixLen: 64, addr: r6.ip },
        { nodeIp6: ip6Of(FX.remoteIp6), vtepMac: FX.remoteVtepMac, flags: 1 },
      );
      h.members6.update(ip6Of(FX.localIp6), 1);
      for (const mode of ["tc", "xdp"] as const) {
        const r = run(mode, kernel);
        expect({ mode, verdict: r.retval, moved: r.moved }).toEqual({
          mode,
          verdict: PASS[mode],
          moved: { decap6_stack: 1 },
        });
        expect(hex(r.data.subarray(14))).toBe(hex(kernel.subarray(84)));
      }
    } finally {
      h.config.update(0, h.cfg);
      h.subnets6.update(
        { prefixLen: 64, addr: r6.ip },
        { nodeIp6: ip6Of(FX.remoteIp6), vtepMac: FX.remoteVtepMac, flags: 0 },
      );
      h.subnets6.update(
        { prefixLen: 64, addr: l6.ip },
        { nodeIp6: ip6Of(FX.localIp6), vtepMac: FX.vtepMac, flags: 1 },
      );
      h.members6.delete(ip6Of(FX.localIp6));
      await ipn("link", "del", "flannel-v6.1").catch(() => {});
      await Bun.file(pcap)
        .delete()
        .catch(() => {});
    }
  }, 20_000);
});
