/**
 * Frames for the encapsulation tests, built with the packet builder: the pod's IPv4
 * packet as it leaves the pod, what forwarding does to it, and the VXLAN frame the kernel
 * vxlan driver (as flanneld configures it) would send for it. Plus running a program on a
 * frame and seeing which counters moved.
 */
import { testRun } from "../../src/bpf/test-run.ts";
import {
  checksum,
  ETH_P_IP,
  ethernet,
  IPPROTO_TCP,
  IPPROTO_UDP,
  icmpEcho,
  ipv4,
  pattern,
  tcp,
  udp,
  vxlan,
} from "../helpers/packet.ts";
import { delta, FX, type Harness } from "./harness.ts";

export interface Inner {
  proto: number;
  src?: string;
  dst?: string;
  ttl?: number;
  tos?: number;
  sport?: number;
  dport?: number;
  size?: number;
}

/** An inner IPv4 packet (no Ethernet), from the fixture pod to the remote pod unless told. */
export function innerIp(o: Inner): Uint8Array {
  const src = o.src ?? FX.podIp;
  const dst = o.dst ?? FX.remotePodIp;
  const body = pattern(o.size ?? 56);
  let l4: Uint8Array;
  if (o.proto === IPPROTO_TCP) l4 = tcp({ sport: o.sport ?? 40000, dport: o.dport ?? 5201, src, dst }, body);
  else if (o.proto === IPPROTO_UDP)
    l4 = udp({ sport: o.sport ?? 40000, dport: o.dport ?? 53, src, dst }, body);
  else l4 = icmpEcho({ id: o.sport ?? 7, seq: 1 }, body);
  return ipv4({ src, dst, proto: o.proto, ttl: o.ttl ?? 64, tos: o.tos ?? 0, id: 0x1234, df: true }, l4);
}

/** As the pod sends it to its gateway (the bridge), or to `dstMac`. */
export function fromPod(ip: Uint8Array, dstMac: string = FX.gwMac): Uint8Array {
  return ethernet({ dst: dstMac, src: FX.podMac, type: ETH_P_IP }, ip);
}

/**
 * What the kernel vxlan driver sends for `inner` (flannel's device: tos 0 with ECN
 * inherited, ttl 64, df unset, inner Ethernet from our VTEP MAC to the remote's), with
 * the outer ID and source port taken from `got`, and UDP checksum 0 as Tartan sends it.
 */
export function kernelVxlanFrame(inner: Uint8Array, got: Uint8Array): Uint8Array {
  const gv = new DataView(got.buffer, got.byteOffset);
  const id = gv.getUint16(14 + 4);
  const sport = gv.getUint16(14 + 20);
  const ecn = inner[1]! & 3;
  const innerEth = ethernet({ dst: FX.remoteVtepMac, src: FX.vtepMac, type: ETH_P_IP }, inner);
  const u = udp({ sport, dport: FX.port }, vxlan(FX.vni, innerEth));
  const outer = ipv4(
    { src: FX.localIp, dst: FX.remoteIp, proto: IPPROTO_UDP, ttl: 64, tos: ecn === 3 ? 2 : ecn, id },
    u,
  );
  return ethernet({ dst: FX.remoteUnderlayMac, src: FX.underlayMac, type: ETH_P_IP }, outer);
}

/** The inner packet after forwarding: TTL − 1, header checksum recomputed. */
export function forwarded(ip: Uint8Array): Uint8Array {
  const out = new Uint8Array(ip);
  out[8] = out[8]! - 1;
  out[10] = 0;
  out[11] = 0;
  const c = checksum(out.subarray(0, (out[0]! & 15) * 4));
  out[10] = c >> 8;
  out[11] = c & 255;
  return out;
}

/** Runs `prog` once on `pkt`; the verdict, the packet out, and the counters that moved. */
export function runCounted(h: Harness, prog: number, pkt: Uint8Array, skb = {}) {
  const before = h.snapshot();
  const r = testRun(prog, { data: pkt, skb });
  return { ...r, moved: delta(before, h.snapshot()) };
}
