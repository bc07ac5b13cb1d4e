// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * encap_pod.bpf.c - the send fast path at the pod: TC ingress of each pod's host-side
 * veth. A frame the pod routes through its gateway (to the gateway's MAC, from the pod's
 * own address as the endpoint map knows it behind this veth) towards a remote node's
 * subnet is encapsulated here and redirected out of the underlay, so it never crosses the
 * bridge, br_netfilter or a second receive on cni0 (include/encap.h builds the frame, as
 * the bridge's program does). Everything else passes (TC_ACT_OK) and goes on to the
 * bridge as without this program: same-node pods, the gateway, ARP, IPv6, broadcast and
 * multicast, the outside world, packets too big for the overlay (the stack answers
 * frag-needed on the bridge path), TTL expiring, and a source the endpoint map does not
 * put behind this veth (a pod not known yet, or a spoofed address): the bridge's program
 * then handles it as before.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tartan.h"
#include "maps.h"
#include "parsing.h"
#include "encap.h"
#include "encap6.h"

/* A pass for one of the reasons shared with encap (a CNT_ENCAP_* id), counted in the pod block. */
static __always_inline int pass(__u32 reason)
{
	return encap_pass(CNT_POD_ENCAP_OK, reason);
}

/* A pass for a reason of the pod program's own (a CNT_POD_PASS_* id). */
static __always_inline int pass_own(__u32 counter)
{
	tartan_count(counter);
	return TC_ACT_OK;
}

/* Two MAC addresses, each 2-byte aligned (Ethernet header, endpoint value). */
static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	const __u16 *x = (const __u16 *)a, *y = (const __u16 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}

/* IPv6 from the pod (dual stack): the same checks against tartan_endpoints6, counted in the pod6 block. */
static __always_inline int encap_pod6(struct __sk_buff *skb, const struct config *cfg)
{
	struct endpoint_value *ep;
	struct endpoint6_key ek;
	struct ipv6hdr *ip6;
	struct ethhdr *eth;

	if (encap6_parse(skb, &eth, &ip6) < 0)
		return encap_pass(CNT_POD6_ENCAP_OK, CNT_ENCAP_PASS_MALFORMED);
	if (eth->h_dest[0] & 1)
		return pass_own(CNT_POD_PASS_NOT_GATEWAY);
	__builtin_memcpy(ek.ip6, ip6->saddr.in6_u.u6_addr8, 16);
	ep = bpf_map_lookup_elem(&tartan_endpoints6, &ek);
	if (!ep || ep->ifindex != skb->ifindex)
		return pass_own(CNT_POD_PASS_NOT_ENDPOINT);
	if (!mac_eq(eth->h_dest, ep->gw_mac))
		return pass_own(CNT_POD_PASS_NOT_GATEWAY);
	return encap6_finish(skb, cfg, ip6, 1, CNT_POD6_ENCAP_OK);
}

SEC("tc")
int tartan_encap_pod(struct __sk_buff *skb)
{
	struct endpoint_value *ep;
	struct endpoint_key ek;
	struct subnet_value *to;
	struct hdr_cursor c;
	struct config *cfg;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 reason;
	int proto;

	cfg = tartan_cfg();
	if (!cfg)
		return pass(CNT_ENCAP_PASS_NOT_READY);
	if (skb->protocol == bpf_htons(ETH_P_IPV6) && (cfg->flags & TARTAN_CFG_IPV6))
		return encap_pod6(skb, cfg);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return pass(CNT_ENCAP_PASS_NOT_IPV4);
	tc_pull_cursor(skb, ENCAP_PULL, &c);
	proto = parse_ethhdr(&c, &eth);
	if (proto < 0)
		return pass(CNT_ENCAP_PASS_MALFORMED);
	if (proto != bpf_htons(ETH_P_IP))
		return pass(CNT_ENCAP_PASS_NOT_IPV4);
	/* broadcast and multicast are the bridge's to flood */
	if (eth->h_dest[0] & 1)
		return pass_own(CNT_POD_PASS_NOT_GATEWAY);
	if (parse_iphdr(&c, skb->len - ETH_HLEN, &ip) < 0)
		return pass(CNT_ENCAP_PASS_MALFORMED);

	/* the pod behind this veth, sending from its own address, through its gateway */
	ek.ip_be = ip->saddr;
	ep = bpf_map_lookup_elem(&tartan_endpoints, &ek);
	if (!ep || ep->ifindex != skb->ifindex)
		return pass_own(CNT_POD_PASS_NOT_ENDPOINT);
	if (!mac_eq(eth->h_dest, ep->gw_mac))
		return pass_own(CNT_POD_PASS_NOT_GATEWAY);

	reason = encap_route_ipv4(skb, cfg, ip, &c, 1, &to);
	if (reason != CNT_MAX)
		return pass(reason);
	return encap_send_ipv4(skb, cfg, ip, to, 1, CNT_POD_ENCAP_OK);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
