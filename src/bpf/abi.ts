/**
 * The one TypeScript mirror of bpf/include/tartan.h: map and program names, struct
 * layouts (size and field offsets), codecs built from those layouts, counter names
 * in enum order, and constants. test/bpf/abi.test.ts checks the layouts, map and
 * program names against the BTF of build/tartan.bpf.o, and the constants and counter
 * ids against tartan.h compiled into a probe, so the two cannot drift.
 * Fields that tartan.h names *_be are written big-endian; all else little-endian.
 * One file on purpose (a little over 500 lines, most of it the counter list): a change to
 * tartan.h is mirrored in one place, which one test holds against the object's BTF.
 */
import type { Ip4 } from "../config/cidr.ts";
import { type Ip6, maskOf6 } from "../config/cidr6.ts";
import { type Layout, offsetOf } from "./layout.ts";
import type { Codec } from "./map.ts";

export const MAPS = {
  subnets: "tartan_subnets",
  members: "tartan_members",
  endpoints: "tartan_endpoints",
  config: "tartan_config",
  counters: "tartan_counters",
  nexthops: "tartan_nexthops",
  subnets6: "tartan_subnets6",
  members6: "tartan_members6",
  nexthops6: "tartan_nexthops6",
  endpoints6: "tartan_endpoints6",
} as const;

export const PROGRAMS = {
  encapFwd: "tartan_encap_fwd",
  encapHost: "tartan_encap_host",
  decapTc: "tartan_decap_tc",
  decapXdp: "tartan_decap_xdp",
  encapPod: "tartan_encap_pod",
} as const;

/**
 * tartan.h's constants, each `TARTAN_<name>` there. Map capacities (TARTAN_MAX_*) stay
 * C-only: nothing here depends on them.
 */
export const CONSTANTS = {
  /** Bumped with every incompatible change to tartan.h (logged when pinned maps are recreated). */
  ABI_VERSION: 4,
  /** Outer IPv4 + UDP + VXLAN + inner Ethernet: the pod MTU is the underlay's minus this. */
  VXLAN_OVERHEAD: 50,
  /** Outer IPv6 + UDP + VXLAN + inner Ethernet: what the kernel caps an IPv6 vxlan device at (underlay − 70). */
  VXLAN6_OVERHEAD: 70,
  /** subnet_value.flags: our own subnet. */
  SUBNET_LOCAL: 0x1,
  /** config.flags: filled in; the programs pass everything until it is set. */
  CFG_READY: 0x1,
  /** config.flags: dual stack, IPv6 pods carried over the IPv6 underlay. */
  CFG_IPV6: 0x2,
  /** How long the programs trust a cached next hop (tartan_nexthops) before asking bpf_fib_lookup again. */
  NEXTHOP_TTL_NS: 1_000_000_000,
} as const;
export const {
  ABI_VERSION,
  VXLAN_OVERHEAD,
  VXLAN6_OVERHEAD,
  SUBNET_LOCAL,
  CFG_READY,
  CFG_IPV6,
  NEXTHOP_TTL_NS,
} = CONSTANTS;

/** Counter names, index = enum tartan_counter value (CNT_ENCAP_OK → "encap_ok"). */
export const COUNTER_NAMES = [
  "encap_ok",
  "encap_ok_neigh",
  "encap_pass_not_ready",
  "encap_pass_not_ipv4",
  "encap_pass_malformed",
  "encap_pass_unknown_dst",
  "encap_pass_local",
  "encap_pass_ttl",
  "encap_pass_too_big",
  "encap_drop_adjust",
  "encap_drop_fib",
  "decap_redirect_peer",
  "decap_stack",
  "decap_pass_not_ready",
  "decap_pass_not_ipv4",
  "decap_pass_malformed",
  "decap_pass_ip_options",
  "decap_pass_fragment",
  "decap_pass_not_udp",
  "decap_pass_other_port",
  "decap_pass_other_dst",
  "decap_pass_other_vni",
  "decap_drop_bad_vxlan",
  "decap_drop_non_member",
  "decap_drop_inner_not_ipv4",
  "decap_drop_inner_malformed",
  "decap_drop_not_local",
  "decap_drop_adjust",
  "pod_encap_ok",
  "pod_encap_ok_neigh",
  "pod_pass_not_ready",
  "pod_pass_not_ipv4",
  "pod_pass_malformed",
  "pod_pass_unknown_dst",
  "pod_pass_local",
  "pod_pass_ttl",
  "pod_pass_too_big",
  "pod_drop_adjust",
  "pod_drop_fib",
  "pod_pass_not_endpoint",
  "pod_pass_not_gateway",
  "host_encap_ok",
  "host_encap_ok_neigh",
  "host_pass_not_ready",
  "host_pass_not_ipv4",
  "host_pass_malformed",
  "host_pass_unknown_dst",
  "host_pass_local",
  "host_pass_ttl",
  "host_pass_too_big",
  "host_drop_adjust",
  "host_drop_fib",
  "encap6_ok",
  "encap6_ok_neigh",
  "encap6_pass_not_ready",
  "encap6_pass_unused",
  "encap6_pass_malformed",
  "encap6_pass_unknown_dst",
  "encap6_pass_local",
  "encap6_pass_ttl",
  "encap6_pass_too_big",
  "encap6_drop_adjust",
  "encap6_drop_fib",
  "encap6_gso",
  "encap6_pass_l4",
  "host6_encap_ok",
  "host6_encap_ok_neigh",
  "host6_pass_not_ready",
  "host6_pass_unused",
  "host6_pass_malformed",
  "host6_pass_unknown_dst",
  "host6_pass_local",
  "host6_pass_ttl",
  "host6_pass_too_big",
  "host6_drop_adjust",
  "host6_drop_fib",
  "host6_gso",
  "host6_pass_l4",
  "pod6_encap_ok",
  "pod6_encap_ok_neigh",
  "pod6_pass_not_ready",
  "pod6_pass_unused",
  "pod6_pass_malformed",
  "pod6_pass_unknown_dst",
  "pod6_pass_local",
  "pod6_pass_ttl",
  "pod6_pass_too_big",
  "pod6_drop_adjust",
  "pod6_drop_fib",
  "pod6_gso",
  "pod6_pass_l4",
  "decap6_redirect_peer",
  "decap6_stack",
  "decap6_pass_unused1",
  "decap6_pass_unused2",
  "decap6_pass_malformed",
  "decap6_pass_ext_headers",
  "decap6_pass_unused3",
  "decap6_pass_not_udp",
  "decap6_pass_other_port",
  "decap6_pass_other_dst",
  "decap6_pass_other_vni",
  "decap6_drop_bad_vxlan",
  "decap6_drop_non_member",
  "decap6_drop_inner_not_ipv6",
  "decap6_drop_inner_malformed",
  "decap6_drop_not_local",
  "decap6_drop_adjust",
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export const COUNTER: { readonly [K in CounterName]: number } = Object.fromEntries(
  COUNTER_NAMES.map((n, i) => [n, i]),
) as { [K in CounterName]: number };

export const LAYOUTS = {
  subnet_key: { size: 8, fields: { prefixlen: [0, 4], addr_be: [4, 4] } },
  subnet_value: { size: 12, fields: { node_ip_be: [0, 4], vtep_mac: [4, 6], flags: [10, 2] } },
  member_key: { size: 4, fields: { node_ip_be: [0, 4] } },
  member_value: { size: 4, fields: { leases: [0, 4] } },
  endpoint_key: { size: 4, fields: { ip_be: [0, 4] } },
  endpoint_value: { size: 16, fields: { ifindex: [0, 4], pod_mac: [4, 6], gw_mac: [10, 6] } },
  nexthop_key: { size: 4, fields: { node_ip_be: [0, 4] } },
  nexthop_value: { size: 24, fields: { ifindex: [0, 4], dmac: [4, 6], smac: [10, 6], checked_ns: [16, 8] } },
  subnet6_key: { size: 20, fields: { prefixlen: [0, 4], addr: [4, 16] } },
  subnet6_value: { size: 24, fields: { node_ip6: [0, 16], vtep_mac: [16, 6], flags: [22, 2] } },
  member6_key: { size: 16, fields: { node_ip6: [0, 16] } },
  nexthop6_key: { size: 16, fields: { node_ip6: [0, 16] } },
  endpoint6_key: { size: 16, fields: { ip6: [0, 16] } },
  config: {
    size: 80,
    fields: {
      flags: [0, 4],
      local_ip_be: [4, 4],
      underlay_ifindex: [8, 4],
      vni: [12, 4],
      port: [16, 2],
      overlay_mtu: [18, 2],
      underlay_mac: [20, 6],
      vtep_mac: [26, 6],
      ttl: [32, 1],
      subnet_len: [33, 1],
      pad: [34, 2],
      subnet_mask_be: [36, 4],
      local_ip6: [40, 16],
      subnet6_mask: [56, 16],
      subnet6_len: [72, 1],
      hop_limit: [73, 1],
      pad6: [74, 2],
      overlay_ifindex: [76, 4],
    },
  },
} as const satisfies Record<string, Layout>;

const off = <L extends keyof typeof LAYOUTS>(l: L, f: keyof (typeof LAYOUTS)[L]["fields"] & string): number =>
  offsetOf(LAYOUTS[l], f);

/** "aa:bb:cc:dd:ee:ff" → 6 bytes; throws on anything else. */
export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p)))
    throw new Error(`not a MAC address: ${mac}`);
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

export function macString(b: Uint8Array): string {
  return macAt(new DataView(b.buffer, b.byteOffset, b.byteLength), 0);
}

/** A hex digit's char code (lower case). */
const hexChar = (d: number) => (d < 10 ? 48 + d : 87 + d);

/**
 * The MAC at `at` as "0e:7a:…", made as one string: the map's 10,000 values are decoded
 * on every doctor run, and a string of pieces (a typed-array view, 6 hex strings and a
 * join per MAC) left ~11 MiB of allocator memory behind (bench/CONTROL-PLANE.md).
 */
function macAt(view: DataView, at: number): string {
  const hi = (i: number) => hexChar(view.getUint8(at + i) >> 4);
  const lo = (i: number) => hexChar(view.getUint8(at + i) & 15);
  // biome-ignore format: one byte a line
  return String.fromCharCode(
    hi(0), lo(0), 58,
    hi(1), lo(1), 58,
    hi(2), lo(2), 58,
    hi(3), lo(3), 58,
    hi(4), lo(4), 58,
    hi(5), lo(5),
  );
}

const COLON = 58; // ":"

/** Value of one hex digit (char code), or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  const l = c | 0x20; // fold A-F to a-f
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * Writes "aa:bb:cc:dd:ee:ff" as 6 bytes without allocating (codecs run once per map
 * entry: 10,000 leases are 10,000 MACs in one batch); throws on anything else.
 */
function putMac(view: DataView, at: number, mac: string): void {
  if (mac.length === 17) {
    let ok = true;
    for (let i = 0; i < 6; i++) {
      const p = i * 3;
      const hi = hexDigit(mac.charCodeAt(p));
      const lo = hexDigit(mac.charCodeAt(p + 1));
      if (hi < 0 || lo < 0 || (i < 5 && mac.charCodeAt(p + 2) !== COLON)) {
        ok = false;
        break;
      }
      view.setUint8(at + i, (hi << 4) | lo);
    }
    if (ok) return;
  }
  throw new Error(`not a MAC address: ${mac}`);
}

function getMac(view: DataView, at: number): string {
  return macAt(view, at);
}

export interface SubnetKey {
  readonly prefixLen: number;
  readonly addr: Ip4;
}
export interface SubnetValue {
  readonly nodeIp: Ip4;
  readonly vtepMac: string;
  readonly flags: number;
}
export interface EndpointValue {
  readonly ifindex: number;
  readonly podMac: string;
  readonly gwMac: string;
}
/** What the encapsulating programs cached of bpf_fib_lookup's answer for a remote node. */
export interface NexthopValue {
  readonly ifindex: number;
  readonly dmac: string;
  readonly smac: string;
  /** bpf_ktime_get_coarse_ns() of the lookup. */
  readonly checkedNs: bigint;
}
/** tartan_subnets6's key and value: an IPv6 subnet of IPv6SubnetLen → the node's PublicIPv6 and IPv6 VTEP MAC. */
export interface Subnet6Key {
  readonly prefixLen: number;
  readonly addr: Ip6;
}
export interface Subnet6Value {
  readonly nodeIp6: Ip6;
  readonly vtepMac: string;
  readonly flags: number;
}
/** The config's dual-stack part (flag CFG_IPV6). */
export interface Config6 {
  readonly localIp6: Ip6;
  /** IPv6SubnetLen: the prefix length of every tartan_subnets6 key (the codec writes its netmask too). */
  readonly subnet6Len: number;
  /** Outer IPv6 hop limit. */
  readonly hopLimit: number;
  /** The overlay device: IPv6 GSO packets go there to be segmented. */
  readonly overlayIfindex: number;
}
export interface Config {
  readonly flags: number;
  readonly localIp: Ip4;
  readonly underlayIfindex: number;
  readonly vni: number;
  readonly port: number;
  readonly overlayMtu: number;
  readonly underlayMac: string;
  readonly vtepMac: string;
  readonly ttl: number;
  /** SubnetLen: the prefix length of every subnet-map key (the codec writes its netmask too). */
  readonly subnetLen: number;
  /** Dual stack: present exactly when flags has CFG_IPV6. */
  readonly v6?: Config6 | null;
}

/** The IPv4 netmask of a prefix length, 0..32, as a host-order number. */
export function prefixMask(len: number): Ip4 {
  return len <= 0 ? 0 : (0xffffffff << (32 - Math.min(len, 32))) >>> 0;
}

// offsets resolved once: the subnet codecs run once per lease in a batch
const SK_PREFIXLEN = off("subnet_key", "prefixlen");
const SK_ADDR = off("subnet_key", "addr_be");
const SV_NODE_IP = off("subnet_value", "node_ip_be");
const SV_VTEP_MAC = off("subnet_value", "vtep_mac");
const SV_FLAGS = off("subnet_value", "flags");

export const subnetKeyCodec: Codec<SubnetKey> = {
  size: LAYOUTS.subnet_key.size,
  encode: (k, v, o) => {
    v.setUint32(o + SK_PREFIXLEN, k.prefixLen, true);
    v.setUint32(o + SK_ADDR, k.addr, false);
  },
  decode: (v, o) => ({
    prefixLen: v.getUint32(o + SK_PREFIXLEN, true),
    addr: v.getUint32(o + SK_ADDR, false),
  }),
};

export const subnetValueCodec: Codec<SubnetValue> = {
  size: LAYOUTS.subnet_value.size,
  encode: (s, v, o) => {
    v.setUint32(o + SV_NODE_IP, s.nodeIp, false);
    putMac(v, o + SV_VTEP_MAC, s.vtepMac);
    v.setUint16(o + SV_FLAGS, s.flags, true);
  },
  decode: (v, o) => ({
    nodeIp: v.getUint32(o + SV_NODE_IP, false),
    vtepMac: getMac(v, o + SV_VTEP_MAC),
    flags: v.getUint16(o + SV_FLAGS, true),
  }),
};

/** 16 bytes of an IPv6 address, network order. */
function putIp6(v: DataView, at: number, ip: Ip6): void {
  v.setBigUint64(at, ip >> 64n, false);
  v.setBigUint64(at + 8, ip & 0xffff_ffff_ffff_ffffn, false);
}

function getIp6(v: DataView, at: number): Ip6 {
  return (v.getBigUint64(at, false) << 64n) | v.getBigUint64(at + 8, false);
}

export const subnet6KeyCodec: Codec<Subnet6Key> = {
  size: LAYOUTS.subnet6_key.size,
  encode: (k, v, o) => {
    v.setUint32(o + off("subnet6_key", "prefixlen"), k.prefixLen, true);
    putIp6(v, o + off("subnet6_key", "addr"), k.addr);
  },
  decode: (v, o) => ({
    prefixLen: v.getUint32(o + off("subnet6_key", "prefixlen"), true),
    addr: getIp6(v, o + off("subnet6_key", "addr")),
  }),
};

export const subnet6ValueCodec: Codec<Subnet6Value> = {
  size: LAYOUTS.subnet6_value.size,
  encode: (s, v, o) => {
    putIp6(v, o + off("subnet6_value", "node_ip6"), s.nodeIp6);
    putMac(v, o + off("subnet6_value", "vtep_mac"), s.vtepMac);
    v.setUint16(o + off("subnet6_value", "flags"), s.flags, true);
  },
  decode: (v, o) => ({
    nodeIp6: getIp6(v, o + off("subnet6_value", "node_ip6")),
    vtepMac: getMac(v, o + off("subnet6_value", "vtep_mac")),
    flags: v.getUint16(o + off("subnet6_value", "flags"), true),
  }),
};

/** member6_key, endpoint6_key and nexthop6_key: one IPv6 address. */
export const ip6KeyCodec: Codec<Ip6> = {
  size: 16,
  encode: (ip, v, o) => putIp6(v, o, ip),
  decode: (v, o) => getIp6(v, o),
};

/** member_key, endpoint_key and nexthop_key: one big-endian IPv4 address. */
export const ip4KeyCodec: Codec<Ip4> = {
  size: 4,
  encode: (ip, v, o) => v.setUint32(o, ip, false),
  decode: (v, o) => v.getUint32(o, false),
};

const MV_LEASES = off("member_value", "leases");

export const memberValueCodec: Codec<number> = {
  size: LAYOUTS.member_value.size,
  encode: (n, v, o) => v.setUint32(o + MV_LEASES, n, true),
  decode: (v, o) => v.getUint32(o + MV_LEASES, true),
};

export const endpointValueCodec: Codec<EndpointValue> = {
  size: LAYOUTS.endpoint_value.size,
  encode: (e, v, o) => {
    v.setUint32(o + off("endpoint_value", "ifindex"), e.ifindex, true);
    putMac(v, o + off("endpoint_value", "pod_mac"), e.podMac);
    putMac(v, o + off("endpoint_value", "gw_mac"), e.gwMac);
  },
  decode: (v, o) => ({
    ifindex: v.getUint32(o + off("endpoint_value", "ifindex"), true),
    podMac: getMac(v, o + off("endpoint_value", "pod_mac")),
    gwMac: getMac(v, o + off("endpoint_value", "gw_mac")),
  }),
};

export const nexthopValueCodec: Codec<NexthopValue> = {
  size: LAYOUTS.nexthop_value.size,
  encode: (n, v, o) => {
    v.setUint32(o + off("nexthop_value", "ifindex"), n.ifindex, true);
    putMac(v, o + off("nexthop_value", "dmac"), n.dmac);
    putMac(v, o + off("nexthop_value", "smac"), n.smac);
    v.setBigUint64(o + off("nexthop_value", "checked_ns"), n.checkedNs, true);
  },
  decode: (v, o) => ({
    ifindex: v.getUint32(o + off("nexthop_value", "ifindex"), true),
    dmac: getMac(v, o + off("nexthop_value", "dmac")),
    smac: getMac(v, o + off("nexthop_value", "smac")),
    checkedNs: v.getBigUint64(o + off("nexthop_value", "checked_ns"), true),
  }),
};

export const configCodec: Codec<Config> = {
  size: LAYOUTS.config.size,
  encode: (c, v, o) => {
    v.setUint32(o + off("config", "flags"), c.flags, true);
    v.setUint32(o + off("config", "local_ip_be"), c.localIp, false);
    v.setUint32(o + off("config", "underlay_ifindex"), c.underlayIfindex, true);
    v.setUint32(o + off("config", "vni"), c.vni, true);
    v.setUint16(o + off("config", "port"), c.port, true);
    v.setUint16(o + off("config", "overlay_mtu"), c.overlayMtu, true);
    putMac(v, o + off("config", "underlay_mac"), c.underlayMac);
    putMac(v, o + off("config", "vtep_mac"), c.vtepMac);
    v.setUint8(o + off("config", "ttl"), c.ttl);
    v.setUint8(o + off("config", "subnet_len"), c.subnetLen);
    v.setUint32(o + off("config", "subnet_mask_be"), prefixMask(c.subnetLen), false);
    const c6 = c.v6 ?? null;
    if (c6 !== null) {
      putIp6(v, o + off("config", "local_ip6"), c6.localIp6);
      putIp6(v, o + off("config", "subnet6_mask"), maskOf6(c6.subnet6Len));
      v.setUint8(o + off("config", "subnet6_len"), c6.subnet6Len);
      v.setUint8(o + off("config", "hop_limit"), c6.hopLimit);
      v.setUint32(o + off("config", "overlay_ifindex"), c6.overlayIfindex, true);
    }
  },
  decode: (v, o) => ({
    flags: v.getUint32(o + off("config", "flags"), true),
    localIp: v.getUint32(o + off("config", "local_ip_be"), false),
    underlayIfindex: v.getUint32(o + off("config", "underlay_ifindex"), true),
    vni: v.getUint32(o + off("config", "vni"), true),
    port: v.getUint16(o + off("config", "port"), true),
    overlayMtu: v.getUint16(o + off("config", "overlay_mtu"), true),
    underlayMac: getMac(v, o + off("config", "underlay_mac")),
    vtepMac: getMac(v, o + off("config", "vtep_mac")),
    ttl: v.getUint8(o + off("config", "ttl")),
    subnetLen: v.getUint8(o + off("config", "subnet_len")),
    v6:
      v.getUint32(o + off("config", "flags"), true) & CFG_IPV6
        ? {
            localIp6: getIp6(v, o + off("config", "local_ip6")),
            subnet6Len: v.getUint8(o + off("config", "subnet6_len")),
            hopLimit: v.getUint8(o + off("config", "hop_limit")),
            overlayIfindex: v.getUint32(o + off("config", "overlay_ifindex"), true),
          }
        : null,
  }),
};

/** Array map index (config, counters). */
export const u32Codec: Codec<number> = {
  size: 4,
  encode: (n, v, o) => v.setUint32(o, n, true),
  decode: (v, o) => v.getUint32(o, true),
};

/** Per-CPU counter value. */
export const u64Codec: Codec<bigint> = {
  size: 8,
  encode: (n, v, o) => v.setBigUint64(o, n, true),
  decode: (v, o) => v.getBigUint64(o, true),
};
