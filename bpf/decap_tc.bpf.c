// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap_tc.bpf.c - TC ingress decapsulation on the underlay interface. Valid VXLAN
 * (our port, address and VNI, from a member node, IPv4 for our subnet) loses its outer
 * IPv4/UDP/VXLAN and inner Ethernet headers (the outer Ethernet header stays, with
 * FIXED_GSO so GSO packets survive: bpf/README.md, "Measured facts"). A packet for a
 * pod in the endpoint map goes straight into the pod with bpf_redirect_peer (MACs
 * rewritten, TTL decremented as forwarding would); anything else for our subnet goes
 * to the stack. Non-VXLAN passes untouched; forged or foreign VXLAN is dropped.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tartan.h"
#include "maps.h"
#include "csum.h"
#include "parsing.h"
#include "vxlan.h"
#include "vxlan6.h"

static __always_inline int verdict(__u32 reason)
{
	tartan_count(reason);
	return decap_is_drop(reason) ? TC_ACT_SHOT : TC_ACT_OK;
}

static __always_inline int verdict6(__u32 reason)
{
	tartan_count(decap6_counter(reason));
	return decap_is_drop(reason) ? TC_ACT_SHOT : TC_ACT_OK;
}

/* VXLAN over IPv6 (dual stack): the same checks, counted in the IPv6 block; a pod in
 * tartan_endpoints6 gets it through bpf_redirect_peer (hop limit − 1), else the stack. */
static __always_inline int decap6(struct __sk_buff *skb, const struct config *cfg)
{
	struct endpoint_value *ep;
	struct endpoint6_key ek;
	struct ipv6hdr *ip6;
	struct hdr_cursor c;
	struct ethhdr *eth;
	__u32 reason;

	tc_pull_cursor(skb, TARTAN_DECAP6_PULL, &c);
	reason = decap_check6(&c, skb->len, cfg, &ip6);
	if (reason != CNT_MAX)
		return verdict6(reason);
	__builtin_memcpy(ek.ip6, ip6->daddr.in6_u.u6_addr8, 16);
	ep = bpf_map_lookup_elem(&tartan_endpoints6, &ek);
	if (bpf_skb_adjust_room(skb, -(int)(sizeof(struct vxlan6_frame) - ETH_HLEN), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return verdict6(CNT_DECAP_DROP_ADJUST);
	if (!ep)
		return verdict6(CNT_DECAP_STACK);
	tc_cursor(skb, &c);
	if (parse_ethhdr(&c, &eth) < 0 || c.pos + sizeof(struct ipv6hdr) > c.end)
		return verdict6(CNT_DECAP_STACK);
	ip6 = c.pos;
	/* hop limit expiring: the stack answers with time-exceeded */
	if (ip6->hop_limit <= 1)
		return verdict6(CNT_DECAP_STACK);
	ip6->hop_limit--;
	__builtin_memcpy(eth->h_dest, ep->pod_mac, 6);
	__builtin_memcpy(eth->h_source, ep->gw_mac, 6);
	tartan_count(CNT_DECAP6_REDIRECT_PEER);
	return bpf_redirect_peer(ep->ifindex, 0);
}

SEC("tc")
int tartan_decap_tc(struct __sk_buff *skb)
{
	struct endpoint_value *ep;
	struct endpoint_key ek;
	struct hdr_cursor c;
	struct config *cfg;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 reason;

	cfg = tartan_cfg();
	if (!cfg)
		return verdict(CNT_DECAP_PASS_NOT_READY);
	if (skb->protocol == bpf_htons(ETH_P_IPV6) && (cfg->flags & TARTAN_CFG_IPV6))
		return decap6(skb, cfg);
	tc_pull_cursor(skb, TARTAN_DECAP_PULL, &c);
	reason = decap_check(&c, skb->len, cfg, &ip);
	if (reason != CNT_MAX)
		return verdict(reason);

	ek.ip_be = ip->daddr;
	ep = bpf_map_lookup_elem(&tartan_endpoints, &ek);

	if (bpf_skb_adjust_room(skb, -(int)(sizeof(struct vxlan_frame) - ETH_HLEN), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return verdict(CNT_DECAP_DROP_ADJUST);
	if (!ep)
		return verdict(CNT_DECAP_STACK);

	/* adjust_room moved the data: the inner IPv4 header now follows the outer Ethernet one */
	tc_cursor(skb, &c);
	if (parse_ethhdr(&c, &eth) < 0 || c.pos + sizeof(struct iphdr) > c.end)
		return verdict(CNT_DECAP_STACK);
	ip = c.pos;
	/* TTL expiring: the stack answers with time-exceeded */
	if (ip->ttl <= 1)
		return verdict(CNT_DECAP_STACK);
	ipv4_dec_ttl(ip);
	__builtin_memcpy(eth->h_dest, ep->pod_mac, 6);
	__builtin_memcpy(eth->h_source, ep->gw_mac, 6);
	tartan_count(CNT_DECAP_REDIRECT_PEER);
	return bpf_redirect_peer(ep->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
