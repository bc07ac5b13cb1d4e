// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * encap.bpf.c - TC encapsulation where traffic for other nodes reaches the node: for an
 * IPv4 packet whose destination lies in a remote node's subnet (subnet map), builds the
 * VXLAN frame the kernel vxlan driver would send and sends it straight out of the
 * underlay interface (include/encap.h).
 *
 * Two attach points share the code:
 *   tartan_encap_fwd   - TC ingress of the pod bridge: pod traffic that the kernel
 *                        would forward (from pods whose veth has no program of its own,
 *                        encap_pod.bpf.c, or that it passed); the inner TTL is
 *                        decremented as forwarding does.
 *   tartan_encap_host  - TC egress of the overlay device: host-originated traffic and
 *                        whatever the stack routed to the cluster network route.
 * Each counts in its own block (encap_*, host_*; encap6_*, host6_* for IPv6 in dual stack,
 * include/encap6.h). The host program is also attached to the TC ingress of the overlay
 * device's peer: IPv6 GSO packets reach it there as segments (encap6.h says why).
 * Anything else (unknown destination, local subnet, too big, TTL expiring) passes
 * to the stack unchanged, which then does what the kernel always does.
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

/* `forwarding`: pod traffic the node routes (bridge); else the host's own (overlay device). */
static __always_inline int encap(struct __sk_buff *skb, int forwarding)
{
	__u32 base = forwarding ? CNT_ENCAP_OK : CNT_HOST_ENCAP_OK;
	struct subnet_value *to;
	struct hdr_cursor c;
	struct config *cfg;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 reason;
	int proto;

	cfg = tartan_cfg();
	if (!cfg)
		return encap_pass(base, CNT_ENCAP_PASS_NOT_READY);
	if (skb->protocol == bpf_htons(ETH_P_IPV6) && (cfg->flags & TARTAN_CFG_IPV6))
		return encap6(skb, cfg, forwarding, forwarding ? CNT_ENCAP6_OK : CNT_HOST6_ENCAP_OK);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return encap_pass(base, CNT_ENCAP_PASS_NOT_IPV4);
	tc_pull_cursor(skb, ENCAP_PULL, &c);
	proto = parse_ethhdr(&c, &eth);
	if (proto < 0)
		return encap_pass(base, CNT_ENCAP_PASS_MALFORMED);
	if (proto != bpf_htons(ETH_P_IP))
		return encap_pass(base, CNT_ENCAP_PASS_NOT_IPV4);
	if (parse_iphdr(&c, skb->len - ETH_HLEN, &ip) < 0)
		return encap_pass(base, CNT_ENCAP_PASS_MALFORMED);
	reason = encap_route_ipv4(skb, cfg, ip, &c, forwarding, &to);
	if (reason != CNT_MAX)
		return encap_pass(base, reason);
	return encap_send_ipv4(skb, cfg, ip, to, forwarding, base);
}

SEC("tc")
int tartan_encap_fwd(struct __sk_buff *skb)
{
	return encap(skb, 1);
}

SEC("tc")
int tartan_encap_host(struct __sk_buff *skb)
{
	return encap(skb, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
