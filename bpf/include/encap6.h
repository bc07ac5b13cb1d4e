/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * encap6.h - the IPv6 half of dual stack: VXLAN over the IPv6 underlay, as the kernel's
 * flannel-v6.<VNI> device sends it, for the programs encap.h serves. Two steps again:
 *
 *   encap_route_ipv6()  where to (tartan_subnets6), or why the kernel gets the packet;
 *   encap_send_ipv6()   outer Ethernet/IPv6/UDP/VXLAN + inner Ethernet to the remote's
 *                       IPv6 VTEP MAC, then out of the underlay (encap_out()).
 *
 * The outer UDP checksum is mandatory over IPv6 (RFC 8200; flannel-v6 accepts no zero
 * checksum). It is computed here the way the kernel's lco_csum() does: once the inner
 * TCP/UDP/ICMPv6 checksum is complete, the inner L4 segment sums to the complement of
 * its pseudo-header, so the outer checksum needs only the headers, whether the inner one
 * is still left to the offload (CHECKSUM_PARTIAL) or not. Packets without an L4 header
 * right after the IPv6 one take a slower branch (encap6_payload_sum()): behind hop-by-hop,
 * destination-options and routing headers, those headers' bytes plus the same complement;
 * a fragment, whose checksum the sender always completes before fragmenting, by summing
 * its bytes. What neither covers passes (CNT_ENCAP6_PASS_L4; see encap6_payload_sum()).
 * And one packet per frame: a GSO packet
 * would need SKB_GSO_UDP_TUNNEL_CSUM, which bpf_skb_adjust_room cannot set, so GSO
 * packets go to the overlay device (redirected there from the bridge or the pod; routed
 * there for the host's own), which segments them (TSO6 off there), and its peer's
 * ingress program encapsulates each segment. Redirected, not passed to the stack: the
 * flow's other packets never see netfilter, so neither may these (a NAT rule, such as
 * the bridge plugin's ipMasq, would rewrite only part of a connection).
 */
#ifndef TARTAN_ENCAP6_H
#define TARTAN_ENCAP6_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tartan.h"
#include "maps.h"
#include "csum.h"
#include "parsing.h"
#include "encap.h"
#include "vxlan6.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

#define IPPROTO_ICMPV6_ 58

_Static_assert(CNT_ENCAP6_DROP_FIB - CNT_ENCAP6_OK == CNT_ENCAP_DROP_FIB - CNT_ENCAP_OK,
	       "the IPv6 encap counters must mirror the encap counters");
_Static_assert(CNT_HOST6_PASS_L4 - CNT_HOST6_ENCAP_OK == CNT_ENCAP6_PASS_L4 - CNT_ENCAP6_OK,
	       "the IPv6 host counters must mirror the IPv6 encap counters");
_Static_assert(CNT_POD6_PASS_L4 - CNT_POD6_ENCAP_OK == CNT_ENCAP6_PASS_L4 - CNT_ENCAP6_OK,
	       "the IPv6 pod counters must mirror the IPv6 encap counters");

/* The IPv6 blocks' own reasons, named as encap_counter() takes them (offsets past CNT_ENCAP_DROP_FIB). */
#define ENCAP6_GSO      (CNT_ENCAP_OK + (CNT_ENCAP6_GSO - CNT_ENCAP6_OK))
#define ENCAP6_PASS_L4  (CNT_ENCAP_OK + (CNT_ENCAP6_PASS_L4 - CNT_ENCAP6_OK))

/* encap_route_ipv6()'s payload sum comes with this bit; without it the payload is TCP/UDP/ICMPv6 right after the header. */
#define ENCAP6_SUM_GIVEN 0x10000

/* The slow branch's bounds: extension headers walked, and bytes summed per step (a stack buffer). */
#define ENCAP6_MAX_EXT 8
#define ENCAP6_CHUNK 128
#define ENCAP6_MAX_CHUNKS (9216 / ENCAP6_CHUNK)

/* Bytes encap6 reads directly: Ethernet + IPv6. */
#define ENCAP6_PULL (ETH_HLEN + sizeof(struct ipv6hdr) + sizeof(struct tcphdr))

/* As ENCAP_FLAGS, with an IPv6 outer header. */
#define ENCAP6_FLAGS                                                                     \
	(BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |                    \
	 BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |               \
	 BPF_F_ADJ_ROOM_FIXED_GSO)

/*
 * One's complement sum (32-bit, not folded) of `len` packet bytes from `off` (an even
 * offset into the IPv6 payload), through a stack buffer; -1 when they cannot be read or
 * there are more than a jumbo frame has. An odd tail is padded with zero, as in a UDP
 * checksum.
 */
static __always_inline long encap6_sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u32 full = len / ENCAP6_CHUNK, tail = len % ENCAP6_CHUNK, padded = (tail + 3) & ~3U;
	__u8 buf[ENCAP6_CHUNK];
	__u32 sum = 0;

	/* whole chunks, then the tail: one way through each step keeps the verifier's walk linear */
	if (full > ENCAP6_MAX_CHUNKS)
		return -1;
	for (int i = 0; i < ENCAP6_MAX_CHUNKS; i++) {
		if (i >= full)
			break;
		if (bpf_skb_load_bytes(skb, off, buf, ENCAP6_CHUNK))
			return -1;
		sum = bpf_csum_diff(0, 0, (__be32 *)buf, ENCAP6_CHUNK, sum);
		off += ENCAP6_CHUNK;
	}
	if (tail == 0)
		return sum;
	__builtin_memset(buf, 0, sizeof(buf));
	if (tail > ENCAP6_CHUNK - 1 || padded > ENCAP6_CHUNK || bpf_skb_load_bytes(skb, off, buf, tail))
		return -1;
	return bpf_csum_diff(0, 0, (__be32 *)buf, padded, sum);
}

/* An IPv6 pseudo-header's sum (folded, not inverted) for `len` bytes of protocol `nexthdr`. */
static __always_inline __u16 ip6_pseudo_sum(const struct ipv6hdr *ip6, __u32 len, __u8 nexthdr)
{
	return csum_add_fold((__u64)csum_words(&ip6->saddr, 16) + bpf_htons(len >> 16) + bpf_htons(len & 0xffff) +
			     bpf_htons(nexthdr));
}

/* Protocols whose checksum may still be left to the offload somewhere past their header
 * (SCTP's CRC32c; tunnels carrying TCP or UDP): their bytes do not tell the sum the wire will carry. */
static __always_inline int ip6_may_defer_csum(__u8 nexthdr)
{
	return nexthdr == 132 || nexthdr == 4 || nexthdr == 41 || nexthdr == 47 || nexthdr == 97 || nexthdr == 115 ||
	       nexthdr == 137;
}

/*
 * The slow branch: the sum (folded, | ENCAP6_SUM_GIVEN) the IPv6 payload of `ip6` will
 * have on the wire when it does not start with TCP, UDP or ICMPv6, or -1 when it cannot
 * be known here. Walks hop-by-hop, destination-options and routing headers (one with
 * segments left is refused: the L4 checksum then covers another destination):
 *   - TCP, UDP or ICMPv6 behind them: their bytes, plus the complement of the L4
 *     pseudo-header (its length without them), whether the L4 checksum is complete yet or not;
 *   - a fragment header: the sender completed every checksum before fragmenting
 *     (ip6_fragment()), so the bytes are the wire's: summed whole;
 *   - any other protocol (AH, ESP, no next header, raw sockets' protocols): summed whole
 *     too, but for those that may defer a checksum (ip6_may_defer_csum()): refused.
 */
static __always_inline long encap6_payload_sum(struct __sk_buff *skb, const struct ipv6hdr *ip6)
{
	__u32 start = ETH_HLEN + sizeof(*ip6), off = start, end = start + bpf_ntohs(ip6->payload_len);
	__u8 nh = ip6->nexthdr;
	int l4 = 0;
	long sum;

	for (int i = 0; i < ENCAP6_MAX_EXT; i++) {
		__u8 ext[4]; /* next header, length in 8-byte units − 1; a routing header's type, segments left */

		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP || nh == IPPROTO_ICMPV6_) {
			l4 = 1;
			break;
		}
		if (nh != 0 && nh != 60 && nh != 43)
			break;
		if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) || (nh == 43 && ext[3] != 0))
			return -1;
		nh = ext[0];
		off += (ext[1] + 1) * 8;
		if (off > end)
			return -1;
	}
	/* more extension headers than walked, or a checksum that may still change */
	if (!l4 && (nh == 0 || nh == 60 || nh == 43 || ip6_may_defer_csum(nh)))
		return -1;
	/* one sum, so the verifier walks the byte loop once per path */
	sum = encap6_sum_bytes(skb, start, (l4 ? off : end) - start);
	if (sum < 0)
		return -1;
	if (l4)
		sum += (__u16)~ip6_pseudo_sum(ip6, end - off, nh);
	return csum_add_fold((__u64)sum) | ENCAP6_SUM_GIVEN;
}

/*
 * Where the IPv6 packet `ip6` goes: CNT_MAX with `*to` = the remote node's entry when it
 * is to be encapsulated, else the reason it is left to the kernel. `forwarding`: the
 * packet is routed by this node (hop limit 1 expires here). `*payload_sum`: 0 when the
 * payload is TCP/UDP/ICMPv6 right after the header, else its sum with ENCAP6_SUM_GIVEN.
 */
static __always_inline __u32 encap_route_ipv6(struct __sk_buff *skb, const struct config *cfg,
					      struct ipv6hdr *ip6, int forwarding, struct subnet6_value **to,
					      __u32 *payload_sum)
{
	struct subnet6_value *sv = tartan_subnet6_of(cfg, ip6->daddr.in6_u.u6_addr8);
	__u32 l3 = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);

	if (!sv)
		return CNT_ENCAP_PASS_UNKNOWN_DST;
	if (sv->flags & TARTAN_SUBNET_LOCAL)
		return CNT_ENCAP_PASS_LOCAL;
	if (forwarding && ip6->hop_limit <= 1)
		return CNT_ENCAP_PASS_TTL;
	if (skb->gso_size) {
		/* segments (the headers are in the same linear area as the IPv6 header) must fit */
		struct tcphdr *tcp = (void *)(ip6 + 1);
		__u32 hdrs = sizeof(*ip6) + sizeof(struct udphdr);

		if (ip6->nexthdr == IPPROTO_TCP) {
			if ((void *)(tcp + 1) > (void *)(long)skb->data_end)
				return CNT_ENCAP_PASS_TOO_BIG;
			hdrs = sizeof(*ip6) + tcp->doff * 4;
		}
		return skb->gso_size + hdrs <= cfg->overlay_mtu ? ENCAP6_GSO : CNT_ENCAP_PASS_TOO_BIG;
	}
	if (l3 > cfg->overlay_mtu)
		return CNT_ENCAP_PASS_TOO_BIG;
	/* the checksum below covers exactly the IPv6 packet: no trailing bytes */
	if (l3 != skb->len - ETH_HLEN)
		return ENCAP6_PASS_L4;
	*payload_sum = 0;
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != IPPROTO_ICMPV6_) {
		long sum = encap6_payload_sum(skb, ip6);

		if (sum < 0)
			return ENCAP6_PASS_L4;
		*payload_sum = sum;
	}
	*to = sv;
	return CNT_MAX;
}

/* As encap_nexthop(), for a remote node's PublicIPv6 (tartan_nexthops6). */
static __always_inline struct nexthop_value *encap_nexthop6(struct __sk_buff *skb, const struct config *cfg,
							    const __u8 *node_ip6, int *rc)
{
	struct nexthop6_key key;
	struct bpf_fib_lookup fib = {};
	struct nexthop_value *nh, fresh = {};
	__u64 now = bpf_ktime_get_coarse_ns();

	__builtin_memcpy(key.node_ip6, node_ip6, 16);
	nh = bpf_map_lookup_elem(&tartan_nexthops6, &key);
	if (nh && now - nh->checked_ns < TARTAN_NEXTHOP_TTL_NS)
		return nh;

	fib.family = AF_INET6;
	fib.l4_protocol = IPPROTO_UDP;
	fib.ifindex = cfg->underlay_ifindex;
	__builtin_memcpy(fib.ipv6_src, cfg->local_ip6, 16);
	__builtin_memcpy(fib.ipv6_dst, node_ip6, 16);
	*rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (*rc != BPF_FIB_LKUP_RET_SUCCESS) {
		if (nh)
			bpf_map_delete_elem(&tartan_nexthops6, &key);
		return 0;
	}
	fresh.ifindex = fib.ifindex;
	__builtin_memcpy(fresh.dmac, fib.dmac, 6);
	__builtin_memcpy(fresh.smac, fib.smac, 6);
	fresh.checked_ns = now;
	bpf_map_update_elem(&tartan_nexthops6, &key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&tartan_nexthops6, &key);
}

/*
 * The outer UDP checksum of frame `h` (check field zero, lengths filled in) around the
 * inner IPv6 header `inner`: its payload sums to `payload_sum` when that has
 * ENCAP6_SUM_GIVEN, else it is an L4 segment whose checksum is, or will be, complete
 * (see above).
 */
static __always_inline __u16 encap6_udp_csum(const struct vxlan6_frame *h, const struct ipv6hdr *inner,
					     __u32 payload_sum)
{
	__u64 sum = 0;
	__u16 check;

	/* outer pseudo-header: addresses, UDP length, next header */
	sum += csum_words(&h->ip6.saddr, 16);
	sum += h->udp.len;
	sum += bpf_htons(IPPROTO_UDP);
	/* UDP, VXLAN and inner Ethernet headers, then the inner IPv6 header */
	sum += csum_words(&h->udp, 15);
	sum += csum_words(inner, 20);
	/* the inner L4 segment: the complement of its pseudo-header's sum */
	if (!(payload_sum & ENCAP6_SUM_GIVEN))
		payload_sum = (__u16)~csum_add_fold((__u64)csum_words(&inner->saddr, 16) + inner->payload_len +
						    bpf_htons(inner->nexthdr));
	sum += payload_sum & 0xffff;
	check = (__u16)~csum_add_fold(sum);
	return check ? check : 0xffff;
}

/*
 * Encapsulates the IPv6 packet `ip6` for the remote node `to` and redirects it out of the
 * underlay, as encap_send_ipv4() does. Invalidates every packet pointer.
 */
static __always_inline int encap_send_ipv6(struct __sk_buff *skb, const struct config *cfg,
					   struct ipv6hdr *ip6, const struct subnet6_value *to, __u32 payload_sum,
					   int forwarding, __u32 base)
{
	struct vxlan6_frame h = {};
	struct ipv6hdr inner;
	struct nexthop_value *nh;
	__u32 l4len, hash, ifindex = 0;
	__u8 node_ip6[16], remote_mac[6], ecn;
	int rc = 0;

	__builtin_memcpy(node_ip6, to->node_ip6, 16);
	__builtin_memcpy(remote_mac, to->vtep_mac, 6);
	if (forwarding)
		ip6->hop_limit--;
	__builtin_memcpy(&inner, ip6, sizeof(inner));
	ecn = encap_outer_tos((inner.flow_lbl[0] >> 4) & 3);
	hash = bpf_get_hash_recalc(skb);
	hash ^= hash << 16;

	if (bpf_skb_adjust_room(skb, sizeof(h) - ETH_HLEN, BPF_ADJ_ROOM_MAC, ENCAP6_FLAGS))
		return encap_drop(base, CNT_ENCAP_DROP_ADJUST);

	l4len = skb->len - ETH_HLEN - sizeof(struct ipv6hdr);
	h.ip6.version = 6;
	h.ip6.flow_lbl[0] = ecn << 4; /* traffic class 0 with the inner ECN, flow label 0 */
	h.ip6.payload_len = bpf_htons(l4len);
	h.ip6.nexthdr = IPPROTO_UDP;
	h.ip6.hop_limit = cfg->hop_limit;
	__builtin_memcpy(&h.ip6.saddr, cfg->local_ip6, 16);
	__builtin_memcpy(&h.ip6.daddr, node_ip6, 16);
	h.udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
	h.udp.dest = bpf_htons(cfg->port);
	h.udp.len = bpf_htons(l4len);
	h.vx.flags = VXLAN_FLAG_VNI;
	h.vx.vni_be = bpf_htonl(cfg->vni << 8);
	__builtin_memcpy(h.inner.h_dest, remote_mac, 6);
	__builtin_memcpy(h.inner.h_source, cfg->vtep_mac, 6);
	h.inner.h_proto = bpf_htons(ETH_P_IPV6);
	h.eth.h_proto = bpf_htons(ETH_P_IPV6);
	h.udp.check = encap6_udp_csum(&h, &inner, payload_sum);

	nh = encap_nexthop6(skb, cfg, node_ip6, &rc);
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

/*
 * Where `ip6` (parsed by encap6_parse()) goes and what happens to it, counted in the IPv6
 * block at `base`: encapsulated and sent; a GSO packet of forwarded traffic to the
 * overlay device; or passed.
 */
static __always_inline int encap6_finish(struct __sk_buff *skb, const struct config *cfg, struct ipv6hdr *ip6,
					 int forwarding, __u32 base)
{
	struct subnet6_value *to;
	__u32 reason, payload_sum;

	reason = encap_route_ipv6(skb, cfg, ip6, forwarding, &to, &payload_sum);
	if (reason == ENCAP6_GSO && forwarding) {
		/* to the overlay device as the kernel would route it (hop limit and all), minus netfilter */
		ip6->hop_limit--;
		tartan_count(encap_counter(base, reason));
		return bpf_redirect(cfg->overlay_ifindex, 0);
	}
	if (reason != CNT_MAX)
		return encap_pass(base, reason);
	return encap_send_ipv6(skb, cfg, ip6, to, payload_sum, forwarding, base);
}

/* The frame's Ethernet and IPv6 headers (pulled in): 0, or -1 when malformed. */
static __always_inline int encap6_parse(struct __sk_buff *skb, struct ethhdr **eth, struct ipv6hdr **ip6)
{
	struct hdr_cursor c;

	tc_pull_cursor(skb, ENCAP6_PULL, &c);
	if (parse_ethhdr(&c, eth) != bpf_htons(ETH_P_IPV6) || parse_ipv6hdr(&c, skb->len - ETH_HLEN, ip6) < 0)
		return -1;
	return 0;
}

/* The IPv6 path of the bridge's and the overlay device's programs, from the frame's start. */
static __always_inline int encap6(struct __sk_buff *skb, const struct config *cfg, int forwarding, __u32 base)
{
	struct ipv6hdr *ip6;
	struct ethhdr *eth;

	if (encap6_parse(skb, &eth, &ip6) < 0)
		return encap_pass(base, CNT_ENCAP_PASS_MALFORMED);
	return encap6_finish(skb, cfg, ip6, forwarding, base);
}

#endif /* TARTAN_ENCAP6_H */
