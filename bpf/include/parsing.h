/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parsing.h - header parsing shared by encapsulation and decapsulation, as cursor
 * helpers in the style of xdp-tools' parsing_helpers.h: a cursor walks the packet,
 * each parse_* bounds-checks one header, advances past it and hands it out.
 *
 * One IPv4 rule everywhere (the pod's packet on encap; the outer and the inner header
 * on decap), the kernel's own (ip_rcv_core): version 4, IHL >= 5, and
 * IHL * 4 <= total length <= the bytes the packet has from that header on. Options
 * and fragments are well-formed IPv4; whether to handle them is each caller's choice.
 */
#ifndef TARTAN_PARSING_H
#define TARTAN_PARSING_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The next header to parse, and the end of the data the program can read directly. */
struct hdr_cursor {
	void *pos;
	void *end;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* A cursor at the start of a TC program's packet (again after a helper moved the data). */
static __always_inline void tc_cursor(struct __sk_buff *skb, struct hdr_cursor *c)
{
	c->pos = (void *)(long)skb->data;
	c->end = (void *)(long)skb->data_end;
}

/*
 * tc_cursor() once the first `want` bytes (or the whole packet, when shorter) are
 * readable directly: pulls them into the linear area when they are not. Pulling
 * invalidates packet pointers, so this comes before any parse.
 */
static __always_inline void tc_pull_cursor(struct __sk_buff *skb, __u32 want, struct hdr_cursor *c)
{
	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, skb->len < want ? skb->len : want);
	tc_cursor(skb, c);
}

static __always_inline void xdp_cursor(struct xdp_md *ctx, struct hdr_cursor *c)
{
	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
}

/* Ethernet: returns h_proto (network order; VLAN tags are not looked through), or -1 when truncated. */
static __always_inline int parse_ethhdr(struct hdr_cursor *c, struct ethhdr **eth)
{
	struct ethhdr *h = c->pos;

	if ((void *)(h + 1) > c->end)
		return -1;
	c->pos = h + 1;
	*eth = h;
	return h->h_proto;
}

/*
 * IPv4 by the rule above; `avail` is the packet's length from this header on (the
 * whole packet, not only the part readable directly). Returns the header length in
 * bytes, or -1 when truncated or malformed. The fixed 20 bytes are bounds-checked; the
 * cursor moves past the options too, and the next parse checks its own bounds.
 */
static __always_inline int parse_iphdr(struct hdr_cursor *c, __u32 avail, struct iphdr **iph)
{
	struct iphdr *h = c->pos;
	__u32 hlen, tot;

	if ((void *)(h + 1) > c->end)
		return -1;
	if (h->version != 4 || h->ihl < 5)
		return -1;
	hlen = h->ihl * 4;
	tot = bpf_ntohs(h->tot_len);
	if (tot < hlen || tot > avail)
		return -1;
	c->pos = (void *)h + hlen;
	*iph = h;
	return hlen;
}

/*
 * IPv6 as the kernel's ipv6_rcv() judges it: version 6 and 40 + payload length <= the
 * bytes the packet has from this header on (`avail`). Returns 0, or -1 when truncated
 * or malformed. Extension headers are left to the caller (nexthdr).
 */
static __always_inline int parse_ipv6hdr(struct hdr_cursor *c, __u32 avail, struct ipv6hdr **ip6h)
{
	struct ipv6hdr *h = c->pos;

	if ((void *)(h + 1) > c->end)
		return -1;
	if (h->version != 6 || sizeof(*h) + bpf_ntohs(h->payload_len) > avail)
		return -1;
	c->pos = h + 1;
	*ip6h = h;
	return 0;
}

static __always_inline int ip_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
}

/* UDP: 0, or -1 when truncated. */
static __always_inline int parse_udphdr(struct hdr_cursor *c, struct udphdr **udp)
{
	struct udphdr *h = c->pos;

	if ((void *)(h + 1) > c->end)
		return -1;
	c->pos = h + 1;
	*udp = h;
	return 0;
}

#endif /* TARTAN_PARSING_H */
