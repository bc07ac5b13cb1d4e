/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * tartan.h - the ABI between Tartan's eBPF programs and the agent.
 *
 * Key/value layouts (fixed-width, explicit padding), counter ids and constants; the
 * maps themselves (names, types, sizes) are defined in maps.h. src/bpf/abi.ts mirrors
 * this file; test/bpf/abi.test.ts checks the two against the compiled object's BTF and
 * against this header compiled into a probe. Change both together and bump
 * TARTAN_ABI_VERSION when a layout or meaning changes.
 *
 * Byte order: fields named *_be are in network byte order (written big-endian by the
 * agent); every other integer is host order.
 */
#ifndef TARTAN_H
#define TARTAN_H

#include <linux/types.h>

#define TARTAN_ABI_VERSION 4

/* Map sizes (C only: the agent does not depend on them). The subnet and member
 * hashes are preallocated (no kmalloc per insert, no allocation failure under memory
 * pressure); the endpoint hash is not. */
#define TARTAN_MAX_SUBNETS   65536
#define TARTAN_MAX_MEMBERS   65536
#define TARTAN_MAX_ENDPOINTS 65536
#define TARTAN_MAX_NEXTHOPS  65536

/* VXLAN on the wire: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
 * The agent sizes the pod MTU with it. */
#define TARTAN_VXLAN_OVERHEAD 50

/* VXLAN over IPv6: outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14). The kernel
 * caps an IPv6 vxlan device at underlay MTU - 70, and a dual-stack pod MTU is sized by it. */
#define TARTAN_VXLAN6_OVERHEAD 70

/* subnet_value.flags */
#define TARTAN_SUBNET_LOCAL 0x1 /* our own subnet: never encapsulated; decap target */

/* config.flags */
#define TARTAN_CFG_READY 0x1 /* config filled in; programs pass everything until set */
#define TARTAN_CFG_IPV6  0x2 /* dual stack: IPv6 pods are carried over the IPv6 underlay (the *6 fields) */

/*
 * tartan_subnets: hash, subnet -> remote node. Every lease of a flannel network has
 * the same prefix length (the config's SubnetLen), so "which subnet holds this
 * address" is one exact lookup of {subnet_len, addr & subnet_mask} (config below),
 * not a longest-prefix match: cheaper per packet and per insert than an LPM trie.
 */
struct subnet_key {
	__u32 prefixlen; /* the subnet's prefix length: config.subnet_len for every entry */
	__u32 addr_be;   /* subnet address (host bits zero) */
};

struct subnet_value {
	__u32 node_ip_be;   /* remote node's PublicIP: outer destination */
	__u8 vtep_mac[6];   /* remote VTEP MAC: inner Ethernet destination */
	__u16 flags;        /* TARTAN_SUBNET_* */
};

/* tartan_members: hash, outer source IPv4 of accepted VXLAN -> leases held. */
struct member_key {
	__u32 node_ip_be;
};

struct member_value {
	__u32 leases; /* how many leases this node IP holds (agent bookkeeping) */
};

/* tartan_endpoints: hash, local pod IPv4 -> where to deliver it. */
struct endpoint_key {
	__u32 ip_be;
};

struct endpoint_value {
	__u32 ifindex;    /* host-side veth of the pod (bpf_redirect_peer target) */
	__u8 pod_mac[6];  /* Ethernet destination: the pod's eth0 */
	__u8 gw_mac[6];   /* Ethernet source: the bridge (pod's gateway) */
};

/*
 * tartan_nexthops: LRU hash, remote node IPv4 -> the underlay next hop the encapsulating
 * programs last found for it with bpf_fib_lookup (its answer cached: the lookup cost about
 * a third of the pod program's time per small packet, bench/DATAPATH.md). Written by the
 * programs only; an entry older than TARTAN_NEXTHOP_TTL_NS is looked up again, so a
 * changed route or neighbour is followed within that time, with or without an agent.
 */
#define TARTAN_NEXTHOP_TTL_NS 1000000000ULL

struct nexthop_key {
	__u32 node_ip_be;
};

struct nexthop_value {
	__u32 ifindex;      /* where bpf_fib_lookup sends it (the underlay) */
	__u8 dmac[6];       /* the next hop's MAC: outer Ethernet destination */
	__u8 smac[6];       /* the underlay's MAC: outer Ethernet source */
	__u64 checked_ns;   /* bpf_ktime_get_coarse_ns() of the lookup */
};

/*
 * The IPv6 side of dual stack, the IPv4 maps' twins: tartan_subnets6 (hash, {subnet6_len,
 * IPv6 subnet} -> remote node's PublicIPv6 and its BackendV6Data VtepMAC), tartan_members6
 * (outer IPv6 sources accepted), tartan_nexthops6 (LRU, as tartan_nexthops). Addresses are
 * 16 bytes in network order. The subnet key keeps the LPM-trie layout {prefixlen, addr}
 * for the reason tartan_subnets does: one exact lookup of {config.subnet6_len,
 * addr & config.subnet6_mask} (every IPv6 lease has IPv6SubnetLen).
 */
struct subnet6_key {
	__u32 prefixlen;   /* config.subnet6_len for every entry */
	__u8 addr[16];     /* subnet address (host bits zero) */
};

struct subnet6_value {
	__u8 node_ip6[16]; /* remote node's PublicIPv6: outer destination */
	__u8 vtep_mac[6];  /* remote BackendV6Data VtepMAC: inner Ethernet destination */
	__u16 flags;       /* TARTAN_SUBNET_* */
};

struct member6_key {
	__u8 node_ip6[16];
};

struct nexthop6_key {
	__u8 node_ip6[16];
};

/* tartan_endpoints6: hash, local pod IPv6 -> where to deliver it (struct endpoint_value). */
struct endpoint6_key {
	__u8 ip6[16];
};

/* tartan_config: array with one entry (key 0). */
struct config {
	__u32 flags;          /* TARTAN_CFG_* */
	__u32 local_ip_be;    /* outer source on encap; required outer destination on decap */
	__u32 underlay_ifindex;
	__u32 vni;            /* 24-bit VNI */
	__u16 port;           /* VXLAN UDP destination port */
	__u16 overlay_mtu;    /* largest inner IPv4 packet encapsulated in BPF */
	__u8 underlay_mac[6]; /* outer Ethernet source (decap: inner destination on pass) */
	__u8 vtep_mac[6];     /* our VTEP MAC: inner Ethernet source */
	__u8 ttl;             /* outer IPv4 TTL */
	__u8 subnet_len;      /* prefix length of every subnet-map key (SubnetLen) */
	__u8 pad[2];
	__u32 subnet_mask_be; /* netmask of subnet_len: subnet of an address = addr & mask */
	/* dual stack (TARTAN_CFG_IPV6) */
	__u8 local_ip6[16];   /* outer IPv6 source on encap; required outer destination on decap */
	__u8 subnet6_mask[16];/* netmask of subnet6_len */
	__u8 subnet6_len;     /* prefix length of every tartan_subnets6 key (IPv6SubnetLen) */
	__u8 hop_limit;       /* outer IPv6 hop limit */
	__u8 pad6[2];
	__u32 overlay_ifindex;/* the overlay device: IPv6 GSO packets are sent there to be segmented */
};

/* Counter ids: index into tartan_counters (per-CPU __u64). Names in abi.ts (COUNTER_NAMES). */
enum tartan_counter {
	/* encapsulation of pod traffic at the bridge's TC ingress (the fallback) */
	CNT_ENCAP_OK = 0,          /* encapsulated, redirected out of the underlay (fib hit) */
	CNT_ENCAP_OK_NEIGH,        /* encapsulated, redirected via bpf_redirect_neigh */
	CNT_ENCAP_PASS_NOT_READY,  /* no config yet */
	CNT_ENCAP_PASS_NOT_IPV4,   /* ARP, IPv6, VLAN, ... */
	CNT_ENCAP_PASS_MALFORMED,  /* truncated or bad IPv4 header */
	CNT_ENCAP_PASS_UNKNOWN_DST,/* no subnet matches the destination */
	CNT_ENCAP_PASS_LOCAL,      /* destination in our own subnet */
	CNT_ENCAP_PASS_TTL,        /* TTL would expire: the stack sends time-exceeded */
	CNT_ENCAP_PASS_TOO_BIG,    /* larger than the overlay MTU: the stack fragments or sends frag-needed */
	CNT_ENCAP_DROP_ADJUST,     /* bpf_skb_adjust_room or a store failed */
	CNT_ENCAP_DROP_FIB,        /* no route to the remote node */
	/* decapsulation (TC and XDP) */
	CNT_DECAP_REDIRECT_PEER,   /* delivered into the pod's veth */
	CNT_DECAP_STACK,           /* decapsulated, handed to the stack */
	CNT_DECAP_PASS_NOT_READY,
	CNT_DECAP_PASS_NOT_IPV4,   /* ARP, IPv6, VLAN-tagged, ... untouched */
	CNT_DECAP_PASS_MALFORMED,  /* truncated outer headers: untouched */
	CNT_DECAP_PASS_IP_OPTIONS, /* outer IPv4 with options: untouched */
	CNT_DECAP_PASS_FRAGMENT,   /* outer IPv4 fragment: untouched (the kernel reassembles) */
	CNT_DECAP_PASS_NOT_UDP,
	CNT_DECAP_PASS_OTHER_PORT, /* UDP not to our VXLAN port */
	CNT_DECAP_PASS_OTHER_DST,  /* VXLAN port, but not to our address */
	CNT_DECAP_PASS_OTHER_VNI,  /* VXLAN for another VNI (another device may own it) */
	CNT_DECAP_DROP_BAD_VXLAN,  /* truncated or without the I flag */
	CNT_DECAP_DROP_NON_MEMBER, /* outer source is not a known node */
	CNT_DECAP_DROP_INNER_NOT_IPV4,
	CNT_DECAP_DROP_INNER_MALFORMED,
	CNT_DECAP_DROP_NOT_LOCAL,  /* inner destination outside our subnet: no relaying */
	CNT_DECAP_DROP_ADJUST,     /* bpf_skb_adjust_room / xdp_adjust_head failed */
	/* encapsulation at a pod's host-side veth (TC ingress): the reasons of CNT_ENCAP_*, in
	 * the same order (encap.h counts by offset), then two of its own. Every pass goes on to
	 * the bridge, whose program and the stack then do what they always do. */
	CNT_POD_ENCAP_OK,          /* encapsulated at the veth, redirected out of the underlay (fib hit) */
	CNT_POD_ENCAP_OK_NEIGH,    /* encapsulated at the veth, redirected via bpf_redirect_neigh */
	CNT_POD_PASS_NOT_READY,
	CNT_POD_PASS_NOT_IPV4,     /* ARP, IPv6, VLAN, ... */
	CNT_POD_PASS_MALFORMED,
	CNT_POD_PASS_UNKNOWN_DST,  /* the outside world, the node's own addresses, services */
	CNT_POD_PASS_LOCAL,        /* a pod on this node, or the gateway */
	CNT_POD_PASS_TTL,
	CNT_POD_PASS_TOO_BIG,      /* the stack fragments it or answers frag-needed, as from the bridge */
	CNT_POD_DROP_ADJUST,
	CNT_POD_DROP_FIB,
	CNT_POD_PASS_NOT_ENDPOINT, /* source is not the endpoint-map pod behind this veth (not known yet, or spoofed) */
	CNT_POD_PASS_NOT_GATEWAY,  /* not addressed to the gateway's MAC: broadcast, multicast, bridged to a pod */
	/* encapsulation of host traffic at the overlay device's TC egress: the reasons of
	 * CNT_ENCAP_*, in the same order (CNT_HOST_PASS_TTL never counts: the host's own
	 * packets are not forwarded). */
	CNT_HOST_ENCAP_OK,
	CNT_HOST_ENCAP_OK_NEIGH,
	CNT_HOST_PASS_NOT_READY,
	CNT_HOST_PASS_NOT_IPV4,
	CNT_HOST_PASS_MALFORMED,
	CNT_HOST_PASS_UNKNOWN_DST,
	CNT_HOST_PASS_LOCAL,
	CNT_HOST_PASS_TTL,
	CNT_HOST_PASS_TOO_BIG,
	CNT_HOST_DROP_ADJUST,
	CNT_HOST_DROP_FIB,
	/* IPv6 pod traffic (dual stack), encapsulated at the bridge's TC ingress: the reasons of
	 * CNT_ENCAP_*, in the same order (the NOT_IPV4 slot counts nothing), then two of its
	 * own. */
	CNT_ENCAP6_OK,
	CNT_ENCAP6_OK_NEIGH,
	CNT_ENCAP6_PASS_NOT_READY,
	CNT_ENCAP6_PASS_UNUSED,
	CNT_ENCAP6_PASS_MALFORMED,
	CNT_ENCAP6_PASS_UNKNOWN_DST,
	CNT_ENCAP6_PASS_LOCAL,
	CNT_ENCAP6_PASS_TTL,       /* hop limit would expire: the stack sends time-exceeded */
	CNT_ENCAP6_PASS_TOO_BIG,   /* the stack answers ICMPv6 packet-too-big (overlay device MTU) */
	CNT_ENCAP6_DROP_ADJUST,
	CNT_ENCAP6_DROP_FIB,
	CNT_ENCAP6_GSO,            /* GSO: redirected to the overlay device, which segments it; its peer's program encapsulates each segment */
	CNT_ENCAP6_PASS_L4,        /* outer UDP checksum not knowable here: routing header with segments left, SCTP or a tunnel unfragmented, >8 ext headers, trailing bytes */
	/* IPv6 host traffic at the overlay device (egress, and its peer's ingress for segments): as CNT_ENCAP6_* */
	CNT_HOST6_ENCAP_OK,
	CNT_HOST6_ENCAP_OK_NEIGH,
	CNT_HOST6_PASS_NOT_READY,
	CNT_HOST6_PASS_UNUSED,
	CNT_HOST6_PASS_MALFORMED,
	CNT_HOST6_PASS_UNKNOWN_DST,
	CNT_HOST6_PASS_LOCAL,
	CNT_HOST6_PASS_TTL,
	CNT_HOST6_PASS_TOO_BIG,
	CNT_HOST6_DROP_ADJUST,
	CNT_HOST6_DROP_FIB,
	CNT_HOST6_GSO,             /* GSO at the overlay device: passed, to be segmented */
	CNT_HOST6_PASS_L4,
	/* IPv6 pod traffic at a pod's host-side veth (TC ingress): as CNT_ENCAP6_*; the pod
	 * program's own two reasons count in CNT_POD_PASS_NOT_ENDPOINT / _NOT_GATEWAY */
	CNT_POD6_ENCAP_OK,
	CNT_POD6_ENCAP_OK_NEIGH,
	CNT_POD6_PASS_NOT_READY,
	CNT_POD6_PASS_UNUSED,
	CNT_POD6_PASS_MALFORMED,
	CNT_POD6_PASS_UNKNOWN_DST,
	CNT_POD6_PASS_LOCAL,
	CNT_POD6_PASS_TTL,
	CNT_POD6_PASS_TOO_BIG,
	CNT_POD6_DROP_ADJUST,
	CNT_POD6_DROP_FIB,
	CNT_POD6_GSO,
	CNT_POD6_PASS_L4,
	/* decapsulation of VXLAN over IPv6 (TC and XDP): the reasons of CNT_DECAP_*, in the same
	 * order (NOT_READY and NOT_IPV4 count in the IPv4 block: they are decided before the
	 * family) */
	CNT_DECAP6_REDIRECT_PEER,
	CNT_DECAP6_STACK,
	CNT_DECAP6_PASS_UNUSED1,
	CNT_DECAP6_PASS_UNUSED2,
	CNT_DECAP6_PASS_MALFORMED,
	CNT_DECAP6_PASS_EXT_HEADERS, /* outer IPv6 with extension headers: untouched */
	CNT_DECAP6_PASS_UNUSED3,     /* (IPv6 fragments carry an extension header) */
	CNT_DECAP6_PASS_NOT_UDP,
	CNT_DECAP6_PASS_OTHER_PORT,
	CNT_DECAP6_PASS_OTHER_DST,
	CNT_DECAP6_PASS_OTHER_VNI,
	CNT_DECAP6_DROP_BAD_VXLAN,
	CNT_DECAP6_DROP_NON_MEMBER,
	CNT_DECAP6_DROP_INNER_NOT_IPV6,
	CNT_DECAP6_DROP_INNER_MALFORMED,
	CNT_DECAP6_DROP_NOT_LOCAL,
	CNT_DECAP6_DROP_ADJUST,
	CNT_MAX,
};

#endif /* TARTAN_H */
