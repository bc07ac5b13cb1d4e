/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vxlan6.h - VXLAN over IPv6 (dual stack, as flannel's flannel-v6.<VNI>): the frame and
 * the receive-side checks shared by the TC and XDP decapsulation programs, the IPv6
 * twin of vxlan.h. The checks answer in vxlan.h's reasons (CNT_DECAP_*); a program
 * counts them in the IPv6 block with decap6_counter().
 */
#ifndef TARTAN_VXLAN6_H
#define TARTAN_VXLAN6_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parsing.h"
#include "vxlan.h"

/* The IPv6 decap block mirrors the IPv4 one reason for reason (counted by offset). */
_Static_assert(CNT_DECAP6_DROP_ADJUST - CNT_DECAP6_REDIRECT_PEER == CNT_DECAP_DROP_ADJUST - CNT_DECAP_REDIRECT_PEER,
	       "the IPv6 decap counters must mirror the decap counters");

/* Outer Ethernet up to the inner IPv6 header (40 bytes). */
#define TARTAN_DECAP6_PULL (ETH_HLEN + 40 + 8 + 8 + ETH_HLEN + 40)

/* The headers of a VXLAN-over-IPv6 frame up to the inner Ethernet header. */
struct vxlan6_frame {
	struct ethhdr eth;
	struct ipv6hdr ip6;
	struct udphdr udp;
	struct vxlanhdr vx;
	struct ethhdr inner;
} __attribute__((packed));

/* The IPv6 block's counter for a CNT_DECAP_* reason. */
static __always_inline __u32 decap6_counter(__u32 reason)
{
	return CNT_DECAP6_REDIRECT_PEER + (reason - CNT_DECAP_REDIRECT_PEER);
}

static __always_inline int ip6_addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* The extension headers ipv6_ext_hdr() knows (hop-by-hop, routing, fragment, AH, ESP,
 * destination options, none, mobility, HIP, shim6, experimental). */
static __always_inline int ip6_is_ext_hdr(__u8 nexthdr)
{
	return nexthdr == 0 || nexthdr == 43 || nexthdr == 44 || nexthdr == 50 || nexthdr == 51 || nexthdr == 59 ||
	       nexthdr == 60 || nexthdr == 135 || nexthdr == 139 || nexthdr == 140 || nexthdr == 253 || nexthdr == 254;
}

/*
 * Is the frame under cursor `c` (at its Ethernet header, whose type is IPv6) VXLAN over
 * IPv6 for us from a member, carrying IPv6 for our IPv6 subnet? As decap_check():
 * CNT_MAX when it is (`*inner_ip6` is the inner header), else the CNT_DECAP_* reason.
 */
static __always_inline __u32 decap_check6(struct hdr_cursor *c, __u32 pkt_len, const struct config *cfg,
					  struct ipv6hdr **inner_ip6)
{
	struct ethhdr *eth, *inner_eth;
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	struct vxlanhdr *vx;
	struct member6_key mk;
	struct subnet6_value *sv;
	int proto;

	if (parse_ethhdr(c, &eth) < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (parse_ipv6hdr(c, pkt_len - ETH_HLEN, &ip6) < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (ip6->nexthdr != IPPROTO_UDP)
		return ip6_is_ext_hdr(ip6->nexthdr) ? CNT_DECAP_PASS_IP_OPTIONS : CNT_DECAP_PASS_NOT_UDP;
	if (parse_udphdr(c, &udp) < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (udp->dest != bpf_htons(cfg->port))
		return CNT_DECAP_PASS_OTHER_PORT;
	if (!ip6_addr_eq(ip6->daddr.in6_u.u6_addr8, cfg->local_ip6))
		return CNT_DECAP_PASS_OTHER_DST;
	if (parse_vxlanhdr(c, &vx) < 0 || !(vx->flags & VXLAN_FLAG_VNI))
		return CNT_DECAP_DROP_BAD_VXLAN;
	if (vx->vni_be != bpf_htonl(cfg->vni << 8))
		return CNT_DECAP_PASS_OTHER_VNI;
	__builtin_memcpy(mk.node_ip6, ip6->saddr.in6_u.u6_addr8, 16);
	if (!bpf_map_lookup_elem(&tartan_members6, &mk))
		return CNT_DECAP_DROP_NON_MEMBER;
	proto = parse_ethhdr(c, &inner_eth);
	if (proto < 0)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	if (proto != bpf_htons(ETH_P_IPV6))
		return CNT_DECAP_DROP_INNER_NOT_IPV4;
	if (parse_ipv6hdr(c, pkt_len - sizeof(struct vxlan6_frame), inner_ip6) < 0)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	sv = tartan_subnet6_of(cfg, (*inner_ip6)->daddr.in6_u.u6_addr8);
	if (!sv || !(sv->flags & TARTAN_SUBNET_LOCAL))
		return CNT_DECAP_DROP_NOT_LOCAL;
	return CNT_MAX;
}

#endif /* TARTAN_VXLAN6_H */
