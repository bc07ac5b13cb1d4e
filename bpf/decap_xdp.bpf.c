// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap_xdp.bpf.c - XDP decapsulation on the underlay interface: the same checks as
 * the TC program, at the earliest point. Forged or foreign VXLAN is dropped here;
 * valid frames lose their outer headers and go to the stack (XDP_PASS) with the
 * Ethernet destination set to the receiving interface (else the stack sees
 * PACKET_OTHERHOST); the stack then routes them to the pod. XDP does not redirect
 * into pod veths: that needs an XDP program inside the pod and loses checksum state
 * (bpf/README.md, "Measured facts").
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tartan.h"
#include "maps.h"
#include "parsing.h"
#include "vxlan.h"
#include "vxlan6.h"

static __always_inline int verdict(__u32 reason)
{
	tartan_count(reason);
	return decap_is_drop(reason) ? XDP_DROP : XDP_PASS;
}

/* VXLAN over IPv6 (dual stack): the same checks, counted in the IPv6 block. */
static __always_inline int decap6(struct xdp_md *ctx, const struct config *cfg)
{
	struct vxlan6_frame *f;
	struct ipv6hdr *inner;
	struct hdr_cursor c;
	__u32 reason;

	xdp_cursor(ctx, &c);
	f = c.pos;
	reason = decap_check6(&c, (__u32)(c.end - (void *)f), cfg, &inner);
	if (reason == CNT_MAX && (void *)(f + 1) > c.end)
		reason = CNT_DECAP_DROP_INNER_MALFORMED;
	if (reason == CNT_MAX) {
		__builtin_memcpy(f->inner.h_source, f->eth.h_source, 6);
		__builtin_memcpy(f->inner.h_dest, cfg->underlay_mac, 6);
		reason = bpf_xdp_adjust_head(ctx, (int)(sizeof(*f) - ETH_HLEN)) ? CNT_DECAP_DROP_ADJUST : CNT_DECAP_STACK;
	}
	tartan_count(decap6_counter(reason));
	return decap_is_drop(reason) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int tartan_decap_xdp(struct xdp_md *ctx)
{
	struct vxlan_frame *f;
	struct hdr_cursor c;
	struct config *cfg;
	struct iphdr *inner;
	__u32 reason;

	cfg = tartan_cfg();
	if (!cfg)
		return verdict(CNT_DECAP_PASS_NOT_READY);
	xdp_cursor(ctx, &c);
	f = c.pos;
	if ((cfg->flags & TARTAN_CFG_IPV6) && (void *)&f->eth + sizeof(f->eth) <= c.end &&
	    f->eth.h_proto == bpf_htons(ETH_P_IPV6))
		return decap6(ctx, cfg);
	reason = decap_check(&c, (__u32)(c.end - (void *)f), cfg, &inner);
	if (reason != CNT_MAX)
		return verdict(reason);
	if ((void *)(f + 1) > c.end)
		return verdict(CNT_DECAP_DROP_INNER_MALFORMED);
	/* the inner Ethernet header becomes the frame's: to us, from the sender's NIC */
	__builtin_memcpy(f->inner.h_source, f->eth.h_source, 6);
	__builtin_memcpy(f->inner.h_dest, cfg->underlay_mac, 6);
	if (bpf_xdp_adjust_head(ctx, (int)(sizeof(*f) - ETH_HLEN)))
		return verdict(CNT_DECAP_DROP_ADJUST);
	return verdict(CNT_DECAP_STACK);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
