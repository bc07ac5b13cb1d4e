/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vxlan.h - the VXLAN wire format and the receive-side checks shared by the TC and
 * XDP decapsulation programs. The checks walk a header cursor (parsing.h), so one
 * function serves both attach points.
 */
#ifndef TARTAN_VXLAN_H
#define TARTAN_VXLAN_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parsing.h"

#define VXLAN_FLAG_VNI 0x08 /* the "I" flag, first byte of the header: the VNI is valid (RFC 7348) */

struct vxlanhdr {
	__u8 flags;      /* VXLAN_FLAG_VNI */
	__u8 reserved1[3];
	__be32 vni_be;   /* VNI << 8 */
};

/* Outer Ethernet up to the inner IPv4 header's first 20 bytes. */
#define TARTAN_DECAP_PULL (ETH_HLEN + 20 + 8 + 8 + ETH_HLEN + 20)

/* The headers of a VXLAN frame up to the inner Ethernet header, as the encapsulation
 * writes them and the decapsulation strips them. Packed: IPv4 sits at offset 14, as on
 * the wire (the verifier allows unaligned packet access on x86). */
struct vxlan_frame {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vxlanhdr vx;
	struct ethhdr inner;
} __attribute__((packed));

/* VXLAN: 0, or -1 when truncated. */
static __always_inline int parse_vxlanhdr(struct hdr_cursor *c, struct vxlanhdr **vx)
{
	struct vxlanhdr *h = c->pos;

	if ((void *)(h + 1) > c->end)
		return -1;
	c->pos = h + 1;
	*vx = h;
	return 0;
}

/*
 * Is the frame under cursor `c` VXLAN for us from a member, carrying IPv4 for our
 * subnet? `pkt_len` is the frame's length (headers claiming more are malformed).
 * Returns CNT_MAX when it is (decapsulate; `*inner_ip` is the inner IPv4 header), else
 * the counter id of the reason; the caller maps the reason to pass or drop with
 * decap_is_drop().
 */
static __always_inline __u32 decap_check(struct hdr_cursor *c, __u32 pkt_len, const struct config *cfg,
					 struct iphdr **inner_ip)
{
	struct ethhdr *eth, *inner_eth;
	struct iphdr *ip;
	struct udphdr *udp;
	struct vxlanhdr *vx;
	struct member_key mk;
	struct subnet_value *sv;
	int proto;

	proto = parse_ethhdr(c, &eth);
	if (proto < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (proto != bpf_htons(ETH_P_IP))
		return CNT_DECAP_PASS_NOT_IPV4;
	if (parse_iphdr(c, pkt_len - ETH_HLEN, &ip) < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (ip->ihl != 5)
		return CNT_DECAP_PASS_IP_OPTIONS;
	if (ip_is_fragment(ip))
		return CNT_DECAP_PASS_FRAGMENT;
	if (ip->protocol != IPPROTO_UDP)
		return CNT_DECAP_PASS_NOT_UDP;
	if (parse_udphdr(c, &udp) < 0)
		return CNT_DECAP_PASS_MALFORMED;
	if (udp->dest != bpf_htons(cfg->port))
		return CNT_DECAP_PASS_OTHER_PORT;
	if (ip->daddr != cfg->local_ip_be)
		return CNT_DECAP_PASS_OTHER_DST;
	if (parse_vxlanhdr(c, &vx) < 0 || !(vx->flags & VXLAN_FLAG_VNI))
		return CNT_DECAP_DROP_BAD_VXLAN;
	if (vx->vni_be != bpf_htonl(cfg->vni << 8))
		return CNT_DECAP_PASS_OTHER_VNI;
	mk.node_ip_be = ip->saddr;
	if (!bpf_map_lookup_elem(&tartan_members, &mk))
		return CNT_DECAP_DROP_NON_MEMBER;
	proto = parse_ethhdr(c, &inner_eth);
	if (proto < 0)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	if (proto != bpf_htons(ETH_P_IP))
		return CNT_DECAP_DROP_INNER_NOT_IPV4;
	/* no outer options (checked above): the inner IPv4 header is sizeof(struct vxlan_frame) in */
	if (parse_iphdr(c, pkt_len - sizeof(struct vxlan_frame), inner_ip) < 0)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	sv = tartan_subnet_of(cfg, (*inner_ip)->daddr);
	if (!sv || !(sv->flags & TARTAN_SUBNET_LOCAL))
		return CNT_DECAP_DROP_NOT_LOCAL;
	return CNT_MAX;
}

/* Reasons that drop the frame; every other reason passes it untouched. */
static __always_inline int decap_is_drop(__u32 reason)
{
	return reason == CNT_DECAP_DROP_BAD_VXLAN || reason == CNT_DECAP_DROP_NON_MEMBER ||
	       reason == CNT_DECAP_DROP_INNER_NOT_IPV4 || reason == CNT_DECAP_DROP_INNER_MALFORMED ||
	       reason == CNT_DECAP_DROP_NOT_LOCAL || reason == CNT_DECAP_DROP_ADJUST;
}

#endif /* TARTAN_VXLAN_H */
