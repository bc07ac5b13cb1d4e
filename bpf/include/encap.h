/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * encap.h - VXLAN encapsulation shared by every program that sends pod or host traffic to
 * another node: the bridge's and the overlay device's (encap.bpf.c) and each pod veth's
 * (encap_pod.bpf.c). One packet goes through two steps:
 *
 *   encap_route_ipv4()  where to: the remote node whose subnet holds the destination, or
 *                       the reason to leave the packet to the kernel (unknown, local,
 *                       TTL expiring, too big for the overlay);
 *   encap_send_ipv4()   build the frame the kernel vxlan driver would send (outer
 *                       Ethernet/IPv4/UDP/VXLAN + inner Ethernet to the remote VTEP MAC)
 *                       with bpf_skb_adjust_room, and redirect it out of the underlay.
 *
 * Each attach point counts in its own block of counters: `base` is the block's first id
 * (CNT_ENCAP_OK: bridge, CNT_POD_ENCAP_OK: pod veth, CNT_HOST_ENCAP_OK: overlay device)
 * and a reason is named by its CNT_ENCAP_* id. The inner packet is IPv4 here; IPv6
 * (dual stack, over the IPv6 underlay) has its own two steps in encap6.h.
 */
#ifndef TARTAN_ENCAP_H
#define TARTAN_ENCAP_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tartan.h"
#include "maps.h"
#include "csum.h"
#include "parsing.h"
#include "vxlan.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* The pod and host blocks mirror the encap block reason for reason (counted by offset). */
_Static_assert(CNT_POD_DROP_FIB - CNT_POD_ENCAP_OK == CNT_ENCAP_DROP_FIB - CNT_ENCAP_OK,
	       "the pod encap counters must mirror the encap counters");
_Static_assert(CNT_HOST_DROP_FIB - CNT_HOST_ENCAP_OK == CNT_ENCAP_DROP_FIB - CNT_ENCAP_OK,
	       "the host encap counters must mirror the encap counters");

/* udp_flow_src_port() with the default range: net.ipv4.ip_local_port_range (32768 60999). */
#define SPORT_MIN 32768
#define SPORT_MAX 60999

/* Bytes encap reads directly: up to the TCP header (encap_fits_mtu() reads it for GSO packets). */
#define ENCAP_PULL (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* L2(ETH_HLEN), not L2(14 + 8): with the VXLAN header counted as L2, segmentation frees
 * every GSO packet (bpf/README.md, "Measured facts") */
#define ENCAP_FLAGS                                                                      \
	(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |                    \
	 BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |               \
	 BPF_F_ADJ_ROOM_FIXED_GSO)

/* The counter of `reason` (a CNT_ENCAP_* id) in the block that starts at `base`. */
static __always_inline __u32 encap_counter(__u32 base, __u32 reason)
{
	return base + (reason - CNT_ENCAP_OK);
}

static __always_inline int encap_pass(__u32 base, __u32 reason)
{
	tartan_count(encap_counter(base, reason));
	return TC_ACT_OK;
}

static __always_inline int encap_drop(__u32 base, __u32 reason)
{
	tartan_count(encap_counter(base, reason));
	return TC_ACT_SHOT;
}

/* INET_ECN_encapsulate(0, inner tos): the outer ECN field follows the inner one. */
static __always_inline __u8 encap_outer_tos(__u8 inner_tos)
{
	__u8 ecn = inner_tos & 3;

	return ecn == 3 ? 2 : ecn;
}

/* Does one segment (or the whole packet) fit the overlay MTU? `l4` is the cursor after the IPv4 header. */
static __always_inline int encap_fits_mtu(struct __sk_buff *skb, struct iphdr *ip, const struct hdr_cursor *l4,
					  const struct config *cfg)
{
	__u32 l3 = bpf_ntohs(ip->tot_len);
	__u32 hdrs;

	if (!skb->gso_size)
		return l3 <= cfg->overlay_mtu;
	hdrs = ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4->pos;

		/* a GSO packet with IPv4 options goes to the stack, which segments it */
		if (ip->ihl != 5 || (void *)(tcp + 1) > l4->end)
			return 0;
		hdrs += tcp->doff * 4;
	} else {
		hdrs += sizeof(struct udphdr);
	}
	return skb->gso_size + hdrs <= cfg->overlay_mtu;
}

/*
 * Where the IPv4 packet `ip` goes (`l4` is the cursor after its header): CNT_MAX with
 * `*to` = the remote node's entry when it is to be encapsulated, else the CNT_ENCAP_*
 * reason it is left to the kernel. `forwarding`: the packet is routed by this node
 * (TTL 1 expires here).
 */
static __always_inline __u32 encap_route_ipv4(struct __sk_buff *skb, const struct config *cfg, struct iphdr *ip,
					      const struct hdr_cursor *l4, int forwarding,
					      struct subnet_value **to)
{
	struct subnet_value *sv = tartan_subnet_of(cfg, ip->daddr);

	if (!sv)
		return CNT_ENCAP_PASS_UNKNOWN_DST;
	if (sv->flags & TARTAN_SUBNET_LOCAL)
		return CNT_ENCAP_PASS_LOCAL;
	if (forwarding && ip->ttl <= 1)
		return CNT_ENCAP_PASS_TTL;
	if (!encap_fits_mtu(skb, ip, l4, cfg))
		return CNT_ENCAP_PASS_TOO_BIG;
	*to = sv;
	return CNT_MAX;
}

/*
 * The underlay next hop towards `node_ip`: the cached answer while younger than
 * TARTAN_NEXTHOP_TTL_NS, else bpf_fib_lookup's (cached when it found the neighbour).
 * NULL when the lookup did not succeed; `*rc` is then its answer (NO_NEIGH: the kernel
 * resolves it through bpf_redirect_neigh; BLACKHOLE and the like: drop).
 */
static __always_inline struct nexthop_value *encap_nexthop(struct __sk_buff *skb, const struct config *cfg,
							   __u32 node_ip, int *rc)
{
	struct nexthop_key key = { .node_ip_be = node_ip };
	struct bpf_fib_lookup fib = {};
	struct nexthop_value *nh, fresh = {};
	__u64 now = bpf_ktime_get_coarse_ns();

	nh = bpf_map_lookup_elem(&tartan_nexthops, &key);
	if (nh && now - nh->checked_ns < TARTAN_NEXTHOP_TTL_NS)
		return nh;

	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	/* tot_len stays 0: with it set, the helper compares the whole (GSO) length with the
	 * route MTU and answers FRAG_NEEDED for every 64 KB super-packet before it looks at the
	 * neighbour, which sent bulk TCP down the slower bpf_redirect_neigh path. With 0 it
	 * checks the skb as forwarding does (is_skb_forwardable: GSO packets pass, and
	 * encap_fits_mtu() already bounded each segment). */
	fib.ifindex = cfg->underlay_ifindex;
	fib.ipv4_src = cfg->local_ip_be;
	fib.ipv4_dst = node_ip;
	*rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (*rc != BPF_FIB_LKUP_RET_SUCCESS) {
		if (nh)
			bpf_map_delete_elem(&tartan_nexthops, &key);
		return 0;
	}
	fresh.ifindex = fib.ifindex;
	__builtin_memcpy(fresh.dmac, fib.dmac, 6);
	__builtin_memcpy(fresh.smac, fib.smac, 6);
	fresh.checked_ns = now;
	bpf_map_update_elem(&tartan_nexthops, &key, &fresh, BPF_ANY);
	/* the map's copy, or (when the update failed) NULL: the caller then takes the slow path */
	return bpf_map_lookup_elem(&tartan_nexthops, &key);
}

/*
 * Sends the built frame: out of `ifindex` when the next hop was found (non-zero), else
 * by fib answer `rc`: dropped when there is no route, or through bpf_redirect_neigh
 * (the kernel resolves the neighbour). Both families' send steps end here.
 */
static __always_inline int encap_out(const struct config *cfg, __u32 base, __u32 ifindex, int rc)
{
	if (ifindex) {
		tartan_count(encap_counter(base, CNT_ENCAP_OK));
		return bpf_redirect(ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_BLACKHOLE || rc == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    rc == BPF_FIB_LKUP_RET_PROHIBIT)
		return encap_drop(base, CNT_ENCAP_DROP_FIB);
	/* no neighbour yet (or forwarding off): let the kernel resolve the next hop */
	tartan_count(encap_counter(base, CNT_ENCAP_OK_NEIGH));
	return bpf_redirect_neigh(cfg->underlay_ifindex, 0, 0, 0);
}

/*
 * Encapsulates the IPv4 packet `ip` (the frame's network header) for the remote node
 * `to` and redirects it out of the underlay; returns the TC verdict, counted in the block
 * at `base`. `forwarding`: decrement the inner TTL as a router would. Invalidates every
 * packet pointer.
 */
static __always_inline int encap_send_ipv4(struct __sk_buff *skb, const struct config *cfg, struct iphdr *ip,
					   const struct subnet_value *to, int forwarding, __u32 base)
{
	struct vxlan_frame h = {};
	struct nexthop_value *nh;
	__u32 node_ip = to->node_ip_be, l3len, hash, ifindex = 0;
	__u8 remote_mac[6];
	__u8 tos = ip->tos;
	int rc = 0;

	__builtin_memcpy(remote_mac, to->vtep_mac, 6);
	if (forwarding)
		ipv4_dec_ttl(ip);
	/* the kernel's flow hash, folded as udp_flow_src_port() does */
	hash = bpf_get_hash_recalc(skb);
	hash ^= hash << 16;

	if (bpf_skb_adjust_room(skb, sizeof(h) - ETH_HLEN, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS))
		return encap_drop(base, CNT_ENCAP_DROP_ADJUST);

	l3len = skb->len - ETH_HLEN;
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tos = encap_outer_tos(tos);
	h.ip.tot_len = bpf_htons(l3len);
	h.ip.id = bpf_htons(bpf_get_prandom_u32() & 0xffff);
	h.ip.frag_off = 0; /* the vxlan driver's default: df unset */
	h.ip.ttl = cfg->ttl;
	h.ip.protocol = IPPROTO_UDP;
	h.ip.saddr = cfg->local_ip_be;
	h.ip.daddr = node_ip;
	h.ip.check = ipv4_csum(&h.ip);
	h.udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
	h.udp.dest = bpf_htons(cfg->port);
	h.udp.len = bpf_htons(l3len - sizeof(struct iphdr));
	h.udp.check = 0; /* allowed for IPv4 (RFC 7348); GSO-safe. flannel.1 fills it (udpcsum) */
	h.vx.flags = VXLAN_FLAG_VNI;
	h.vx.vni_be = bpf_htonl(cfg->vni << 8);
	__builtin_memcpy(h.inner.h_dest, remote_mac, 6);
	__builtin_memcpy(h.inner.h_source, cfg->vtep_mac, 6);
	h.inner.h_proto = bpf_htons(ETH_P_IP);
	h.eth.h_proto = bpf_htons(ETH_P_IP);

	nh = encap_nexthop(skb, cfg, node_ip, &rc);
	if (nh) {
		__builtin_memcpy(h.eth.h_dest, nh->dmac, 6);
		__builtin_memcpy(h.eth.h_source, nh->smac, 6);
		ifindex = nh->ifindex;
	} else {
		__builtin_memcpy(h.eth.h_source, cfg->underlay_mac, 6);
	}
	if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return encap_drop(base, CNT_ENCAP_DROP_ADJUST);
	return encap_out(cfg, base, ifindex, rc);
}

#endif /* TARTAN_ENCAP_H */
