/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vxlan.h - the VXLAN wire format and the receive-side checks shared by the TC and
 * XDP decapsulation programs. The checks work on a data/data_end window so one
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

struct vxlanhdr {
	__u8 flags;      /* TARTAN_VXLAN_FLAG_VNI */
	__u8 reserved1[3];
	__be32 vni_be;   /* VNI << 8 */
};

/* Outer Ethernet up to the inner IPv4 header's first 20 bytes. */
#define TARTAN_DECAP_PULL (ETH_HLEN + 20 + 8 + 8 + ETH_HLEN + 20)

/* Ethernet header bytes plus the headers a VXLAN frame adds. Packed: IPv4 sits at
 * offset 14, as on the wire (the verifier allows unaligned packet access on x86). */
struct vxlan_frame {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vxlanhdr vx;
	struct ethhdr inner;
} __attribute__((packed));

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IP_DF 0x4000

/*
 * Is this frame VXLAN for us from a member, carrying IPv4 for our subnet? `pkt_len`
 * is the frame's length (headers claiming more than that are malformed).
 * Returns CNT_MAX when it is (decapsulate), else the counter id of the reason; the
 * caller maps the reason to pass or drop with decap_is_drop().
 */
static __always_inline __u32 decap_check(void *data, void *data_end, __u32 pkt_len,
					 const struct config *cfg)
{
	struct vxlan_frame *f = data;
	struct iphdr *inner;
	struct member_key mk;
	struct subnet_value *sv;

	if ((void *)(&f->eth + 1) > data_end)
		return CNT_DECAP_PASS_MALFORMED;
	if (f->eth.h_proto != bpf_htons(ETH_P_IP))
		return CNT_DECAP_PASS_NOT_IPV4;
	if ((void *)(&f->ip + 1) > data_end)
		return CNT_DECAP_PASS_MALFORMED;
	if (f->ip.version != 4 || f->ip.ihl < 5)
		return CNT_DECAP_PASS_MALFORMED;
	if (f->ip.ihl != 5)
		return CNT_DECAP_PASS_IP_OPTIONS;
	if (bpf_ntohs(f->ip.tot_len) > pkt_len - ETH_HLEN)
		return CNT_DECAP_PASS_MALFORMED;
	if (f->ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return CNT_DECAP_PASS_FRAGMENT;
	if (f->ip.protocol != IPPROTO_UDP)
		return CNT_DECAP_PASS_NOT_UDP;
	if ((void *)(&f->udp + 1) > data_end)
		return CNT_DECAP_PASS_MALFORMED;
	if (f->udp.dest != bpf_htons(cfg->port))
		return CNT_DECAP_PASS_OTHER_PORT;
	if (f->ip.daddr != cfg->local_ip_be)
		return CNT_DECAP_PASS_OTHER_DST;
	if ((void *)(&f->vx + 1) > data_end)
		return CNT_DECAP_DROP_BAD_VXLAN;
	if (!(f->vx.flags & TARTAN_VXLAN_FLAG_VNI))
		return CNT_DECAP_DROP_BAD_VXLAN;
	if (f->vx.vni_be != bpf_htonl(cfg->vni << 8))
		return CNT_DECAP_PASS_OTHER_VNI;
	mk.node_ip_be = f->ip.saddr;
	if (!bpf_map_lookup_elem(&tartan_members, &mk))
		return CNT_DECAP_DROP_NON_MEMBER;
	if ((void *)(&f->inner + 1) > data_end)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	if (f->inner.h_proto != bpf_htons(ETH_P_IP))
		return CNT_DECAP_DROP_INNER_NOT_IPV4;
	inner = (void *)(f + 1);
	if ((void *)(inner + 1) > data_end)
		return CNT_DECAP_DROP_INNER_MALFORMED;
	if (inner->version != 4 || inner->ihl < 5 ||
	    bpf_ntohs(inner->tot_len) > pkt_len - sizeof(struct vxlan_frame))
		return CNT_DECAP_DROP_INNER_MALFORMED;
	sv = tartan_subnet_of(cfg, inner->daddr);
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
