/**
 * IPv6 frames for the dual-stack BPF tests: the pod's IPv6 packet (TCP, UDP or ICMPv6
 * with its checksum complete, or a TCP one left for the offload as CHECKSUM_PARTIAL
 * leaves it), with extension headers put in or cut into fragments as the sender's kernel
 * would, what forwarding does to it, the VXLAN-over-IPv6 frame the kernel's flannel-v6
 * device would send for it, and the outer UDP checksum check.
 */
import { parseIp6 } from "../../src/config/cidr6.ts";
import {
  checksum,
  concat,
  ETH_P_IPV6,
  ethernet,
  IPPROTO_TCP,
  IPPROTO_UDP,
  pattern,
  vxlan,
} from "../helpers/packet.ts";
import { FX } from "./harness.ts";

export const IPPROTO_ICMPV6 = 58;

/** An IPv6 address as 16 bytes. */
export function ip6Bytes(s: string): Uint8Array {
  const v = parseIp6(s);
  if (v === null) throw new Error(`not an IPv6 address: ${s}`);
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, v >> 64n);
  dv.setBigUint64(8, v & 0xffff_ffff_ffff_ffffn);
  return out;
}

/** The one's complement sum (unfolded-safe, not inverted) of an IPv6 pseudo-header. */
export function pseudo6(src: Uint8Array, dst: Uint8Array, len: number, next: number): number {
  const p = concat(
    src,
    dst,
    Uint8Array.of(len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255, 0, 0, 0, next),
  );
  return ~checksum(p) & 0xffff;
}

export interface Ip6HdrOpts {
  src: string;
  dst: string;
  next: number;
  hopLimit?: number;
  tclass?: number;
  flowLabel?: number;
}

export function ip6Header(o: Ip6HdrOpts, payloadLen: number): Uint8Array {
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  v.setUint32(0, ((6 << 28) | ((o.tclass ?? 0) << 20) | (o.flowLabel ?? 0)) >>> 0);
  v.setUint16(4, payloadLen);
  h[6] = o.next;
  h[7] = o.hopLimit ?? 64;
  h.set(ip6Bytes(o.src), 8);
  h.set(ip6Bytes(o.dst), 24);
  return h;
}

export interface Inner6 {
  proto: number;
  src?: string;
  dst?: string;
  hopLimit?: number;
  tclass?: number;
  size?: number;
  /** TCP only: the checksum left as CHECKSUM_PARTIAL leaves it (the pseudo-header sum, for the offload to finish). */
  partial?: boolean;
}

/** An inner IPv6 packet (no Ethernet), from the fixture pod to the remote pod unless told. */
export function innerIp6(o: Inner6): Uint8Array {
  const src = o.src ?? FX.podIp6;
  const dst = o.dst ?? FX.remotePodIp6;
  const body = pattern(o.size ?? 56);
  let l4: Uint8Array;
  let at: number; // checksum offset
  if (o.proto === IPPROTO_TCP) {
    l4 = concat(new Uint8Array(20), body);
    const v = new DataView(l4.buffer);
    v.setUint16(0, 40000);
    v.setUint16(2, 5201);
    v.setUint32(4, 1);
    v.setUint8(12, 5 << 4);
    v.setUint8(13, 0x18);
    v.setUint16(14, 64240);
    at = 16;
  } else if (o.proto === IPPROTO_UDP) {
    l4 = concat(new Uint8Array(8), body);
    const v = new DataView(l4.buffer);
    v.setUint16(0, 40000);
    v.setUint16(2, 53);
    v.setUint16(4, l4.length);
    at = 6;
  } else {
    l4 = concat(Uint8Array.of(128, 0, 0, 0, 0, 7, 0, 1), body); // echo request, id 7, seq 1
    at = 2;
  }
  const ps = pseudo6(ip6Bytes(src), ip6Bytes(dst), l4.length, o.proto);
  const v = new DataView(l4.buffer);
  if (o.partial) v.setUint16(at, ps);
  else {
    const c = checksum(l4, ps);
    v.setUint16(at, o.proto === IPPROTO_UDP && c === 0 ? 0xffff : c);
  }
  return concat(
    ip6Header({ src, dst, next: o.proto, hopLimit: o.hopLimit, tclass: o.tclass }, l4.length),
    l4,
  );
}

export const NEXTHDR_HOP = 0;
export const NEXTHDR_ROUTING = 43;
export const NEXTHDR_FRAGMENT = 44;
export const NEXTHDR_DEST = 60;

/**
 * `ip` with extension headers of the given types put in after its fixed header, in that
 * order, each 8 bytes (a PadN option; a routing header of type 4 with `segmentsLeft`).
 * The L4 checksum stays right: its pseudo-header has the L4 length and the final protocol.
 */
export function withExtHeaders(ip: Uint8Array, types: readonly number[], segmentsLeft = 0): Uint8Array {
  const exts = types.map((t, i) => {
    const e = new Uint8Array(8);
    e[0] = i + 1 < types.length ? types[i + 1]! : ip[6]!;
    e[1] = 0;
    if (t === NEXTHDR_ROUTING) {
      e[2] = 4;
      e[3] = segmentsLeft;
    } else e.set([1, 4], 2); // PadN, 4 bytes
    return e;
  });
  const out = concat(ip.subarray(0, 40), ...exts, ip.subarray(40));
  const v = new DataView(out.buffer);
  v.setUint16(4, out.length - 40);
  out[6] = types[0] ?? ip[6]!;
  return out;
}

/** `ip` cut into fragments of at most `mtu` bytes, as ip6_fragment() does (fragment header right after the fixed one). */
export function fragments6(ip: Uint8Array, mtu: number, id = 0x1234_5678): Uint8Array[] {
  const payload = ip.subarray(40);
  const per = (mtu - 40 - 8) & ~7;
  const out: Uint8Array[] = [];
  for (let at = 0; at < payload.length; at += per) {
    const part = payload.subarray(at, Math.min(payload.length, at + per));
    const more = at + per < payload.length;
    const frag = new Uint8Array(8);
    const fv = new DataView(frag.buffer);
    frag[0] = ip[6]!;
    fv.setUint16(2, at | (more ? 1 : 0));
    fv.setUint32(4, id);
    const f = concat(ip.subarray(0, 40), frag, part);
    new DataView(f.buffer).setUint16(4, f.length - 40);
    f[6] = NEXTHDR_FRAGMENT;
    out.push(f);
  }
  return out;
}

/** As the pod sends it to its gateway. */
export function fromPod6(ip: Uint8Array, dstMac: string = FX.gwMac): Uint8Array {
  return ethernet({ dst: dstMac, src: FX.podMac, type: ETH_P_IPV6 }, ip);
}

/** The inner packet after forwarding: hop limit − 1 (IPv6 has no header checksum). */
export function forwarded6(ip: Uint8Array): Uint8Array {
  const out = new Uint8Array(ip);
  out[7] = out[7]! - 1;
  return out;
}

/** `ip` with its inner L4 checksum finished, as the offload would (TCP only; its header at `l4At`). */
export function completed6(ip: Uint8Array, l4At = 40): Uint8Array {
  const out = new Uint8Array(ip);
  const l4 = out.subarray(l4At);
  const v = new DataView(out.buffer, out.byteOffset + l4At);
  // the offload sums the segment with the pseudo-header sum in the field; the same as summing it fresh
  v.setUint16(16, 0);
  v.setUint16(16, checksum(l4, pseudo6(out.subarray(8, 24), out.subarray(24, 40), l4.length, IPPROTO_TCP)));
  return out;
}

/**
 * What flannel-v6.<VNI> sends for `inner` (as measured against the kernel in
 * encap6.test.ts): outer traffic class 0 with the inner ECN (CE as ECT(0)), flow label
 * 0, hop limit 64, inner Ethernet from our VTEP MAC to the remote's, UDP checksum over
 * the frame as it is; the UDP source port taken from `got` (the kernel's is per flow).
 */
export function kernelVxlan6Frame(inner: Uint8Array, got: Uint8Array): Uint8Array {
  const sport = new DataView(got.buffer, got.byteOffset).getUint16(14 + 40);
  const ecn = (((inner[0]! & 15) << 4) | (inner[1]! >> 4)) & 3;
  const innerEth = ethernet({ dst: FX.remoteVtepMac, src: FX.vtepMac, type: ETH_P_IPV6 }, inner);
  const u = concat(new Uint8Array(8), vxlan(FX.vni, innerEth));
  const v = new DataView(u.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, FX.port);
  v.setUint16(4, u.length);
  const c = checksum(u, pseudo6(ip6Bytes(FX.localIp6), ip6Bytes(FX.remoteIp6), u.length, IPPROTO_UDP));
  v.setUint16(6, c === 0 ? 0xffff : c);
  const outer = ip6Header(
    { src: FX.localIp6, dst: FX.remoteIp6, next: IPPROTO_UDP, hopLimit: 64, tclass: ecn === 3 ? 2 : ecn },
    u.length,
  );
  return ethernet({ dst: FX.remoteUnderlayMac, src: FX.underlayMac, type: ETH_P_IPV6 }, concat(outer, u));
}

/** Is the outer UDP checksum of a VXLAN-over-IPv6 frame right (and not zero)? */
export function outerUdp6Valid(frame: Uint8Array): boolean {
  const ip = frame.subarray(14);
  const u = ip.subarray(40);
  const stored = (u[6]! << 8) | u[7]!;
  return (
    stored !== 0 && checksum(u, pseudo6(ip.subarray(8, 24), ip.subarray(24, 40), u.length, IPPROTO_UDP)) === 0
  );
}
