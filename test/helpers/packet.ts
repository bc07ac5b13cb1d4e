/**
 * A small packet builder for tests: Ethernet (with optional 802.1Q tag), IPv4 (with
 * options and fragment fields), IPv6, UDP, TCP, ICMP echo and VXLAN, with the
 * Internet checksum computed the way the kernel does. Fixtures are built from these,
 * never pasted as hex. Pure; no I/O.
 */

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_IPV6 = 0x86dd;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(":").map((x) => Number.parseInt(x, 16)));
}

/** Dotted quad → 4 bytes. */
export function ip4(s: string): Uint8Array {
  return Uint8Array.from(s.split(".").map(Number));
}

/** The Internet checksum (RFC 1071) of `data`, starting from partial sum `init`. */
export function checksum(data: Uint8Array, init = 0): number {
  let sum = init;
  for (let i = 0; i + 1 < data.length; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (data.length % 2) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoSum(src: Uint8Array, dst: Uint8Array, proto: number, len: number): number {
  const p = concat(src, dst, Uint8Array.of(0, proto, len >> 8, len & 255));
  return (~checksum(p) & 0xffff) >>> 0;
}

export interface EthOpts {
  dst: string;
  src: string;
  type: number;
  /** 802.1Q VLAN id: inserts a tag before `type`. */
  vlan?: number;
}

export function ethernet(o: EthOpts, payload: Uint8Array): Uint8Array {
  const h = new Uint8Array(o.vlan === undefined ? 14 : 18);
  const v = new DataView(h.buffer);
  h.set(mac(o.dst), 0);
  h.set(mac(o.src), 6);
  if (o.vlan === undefined) v.setUint16(12, o.type);
  else {
    v.setUint16(12, ETH_P_8021Q);
    v.setUint16(14, o.vlan & 0xfff);
    v.setUint16(16, o.type);
  }
  return concat(h, payload);
}

export interface Ip4Opts {
  src: string;
  dst: string;
  proto: number;
  ttl?: number;
  tos?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  /** IPv4 options (padded to a multiple of 4). */
  options?: Uint8Array;
}

export function ipv4(o: Ip4Opts, payload: Uint8Array): Uint8Array {
  const optLen = o.options ? Math.ceil(o.options.length / 4) * 4 : 0;
  const h = new Uint8Array(20 + optLen);
  const v = new DataView(h.buffer);
  v.setUint8(0, 0x40 | ((20 + optLen) / 4));
  v.setUint8(1, o.tos ?? 0);
  v.setUint16(2, h.length + payload.length);
  v.setUint16(4, o.id ?? 0);
  v.setUint16(6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.fragOffset ?? 0));
  v.setUint8(8, o.ttl ?? 64);
  v.setUint8(9, o.proto);
  h.set(ip4(o.src), 12);
  h.set(ip4(o.dst), 16);
  if (o.options) h.set(o.options, 20);
  v.setUint16(10, checksum(h));
  return concat(h, payload);
}

/**
 * A copy of `pkt` whose IPv4 header at byte `at` claims total length `len` (the header
 * checksum recomputed): for headers that lie about their length.
 */
export function withIpv4TotalLength(pkt: Uint8Array, at: number, len: number): Uint8Array {
  const out = new Uint8Array(pkt);
  const v = new DataView(out.buffer);
  v.setUint16(at + 2, len);
  v.setUint16(at + 10, 0);
  v.setUint16(at + 10, checksum(out.subarray(at, at + (out[at]! & 15) * 4)));
  return out;
}

export interface Ip6Opts {
  src: Uint8Array;
  dst: Uint8Array;
  next: number;
  hopLimit?: number;
}

export function ipv6(o: Ip6Opts, payload: Uint8Array): Uint8Array {
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0x60000000);
  v.setUint16(4, payload.length);
  v.setUint8(6, o.next);
  v.setUint8(7, o.hopLimit ?? 64);
  h.set(o.src, 8);
  h.set(o.dst, 24);
  return concat(h, payload);
}

export interface UdpOpts {
  sport: number;
  dport: number;
  /** IPv4 addresses for the checksum; omitted → checksum 0 (as VXLAN senders do). */
  src?: string;
  dst?: string;
}

export function udp(o: UdpOpts, payload: Uint8Array): Uint8Array {
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  v.setUint16(0, o.sport);
  v.setUint16(2, o.dport);
  v.setUint16(4, 8 + payload.length);
  const seg = concat(h, payload);
  if (o.src && o.dst) {
    const c = checksum(seg, pseudoSum(ip4(o.src), ip4(o.dst), IPPROTO_UDP, seg.length));
    new DataView(seg.buffer).setUint16(6, c === 0 ? 0xffff : c);
  }
  return seg;
}

export interface TcpOpts {
  sport: number;
  dport: number;
  src: string;
  dst: string;
  seq?: number;
  ack?: number;
  /** TCP flags byte (0x02 SYN, 0x10 ACK, 0x18 PSH|ACK). */
  flags?: number;
  window?: number;
}

export function tcp(o: TcpOpts, payload: Uint8Array): Uint8Array {
  const h = new Uint8Array(20);
  const v = new DataView(h.buffer);
  v.setUint16(0, o.sport);
  v.setUint16(2, o.dport);
  v.setUint32(4, o.seq ?? 1);
  v.setUint32(8, o.ack ?? 0);
  v.setUint8(12, 5 << 4);
  v.setUint8(13, o.flags ?? 0x18);
  v.setUint16(14, o.window ?? 64240);
  const seg = concat(h, payload);
  new DataView(seg.buffer).setUint16(
    16,
    checksum(seg, pseudoSum(ip4(o.src), ip4(o.dst), IPPROTO_TCP, seg.length)),
  );
  return seg;
}

export function icmpEcho(o: { id: number; seq: number; reply?: boolean }, payload: Uint8Array): Uint8Array {
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  v.setUint8(0, o.reply ? 0 : 8);
  v.setUint16(4, o.id);
  v.setUint16(6, o.seq);
  const m = concat(h, payload);
  new DataView(m.buffer).setUint16(2, checksum(m));
  return m;
}

export function vxlan(vni: number, payload: Uint8Array, flags = 0x08): Uint8Array {
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  v.setUint8(0, flags);
  v.setUint32(4, (vni << 8) >>> 0);
  return concat(h, payload);
}

/** A payload of `n` bytes with a recognisable pattern. */
export function pattern(n: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
