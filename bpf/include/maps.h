/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - the BTF-defined maps every Tartan program shares. Each program file
 * includes this; the definitions are __weak so `bpftool gen object` merges the
 * identical copies into one map per name in build/tartan.bpf.o.
 */
#ifndef TARTAN_MAPS_H
#define TARTAN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tartan.h"

/* subnet (all of one prefix length) -> remote node. A preallocated hash, not an LPM
 * trie: 10,000 leases insert in 4-5 ms instead of 13-21 ms (a trie allocates a node
 * per insert), and a packet costs one hash lookup (bench/CONTROL-PLANE.md). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_SUBNETS);
	__type(key, struct subnet_key);
	__type(value, struct subnet_value);
} tartan_subnets SEC(".maps") __weak;

/* outer source IPs VXLAN is accepted from (preallocated: 10,000 inserts cost a few
 * ms instead of tens — see bench/CONTROL-PLANE.md) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_MEMBERS);
	__type(key, struct member_key);
	__type(value, struct member_value);
} tartan_members SEC(".maps") __weak;

/* local pods: IP -> host-side veth + MACs */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_value);
} tartan_endpoints SEC(".maps") __weak;

/* remote node -> its underlay next hop, as bpf_fib_lookup last answered (encap.h) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TARTAN_MAX_NEXTHOPS);
	__type(key, struct nexthop_key);
	__type(value, struct nexthop_value);
} tartan_nexthops SEC(".maps") __weak;

/* dual stack: the IPv6 twins of tartan_subnets, tartan_members, tartan_endpoints and tartan_nexthops */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_SUBNETS);
	__type(key, struct subnet6_key);
	__type(value, struct subnet6_value);
} tartan_subnets6 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_MEMBERS);
	__type(key, struct member6_key);
	__type(value, struct member_value);
} tartan_members6 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARTAN_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint6_key);
	__type(value, struct endpoint_value);
} tartan_endpoints6 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TARTAN_MAX_NEXTHOPS);
	__type(key, struct nexthop6_key);
	__type(value, struct nexthop_value);
} tartan_nexthops6 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} tartan_config SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32); /* enum tartan_counter */
	__type(value, __u64);
} tartan_counters SEC(".maps") __weak;

static __always_inline struct config *tartan_cfg(void)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&tartan_config, &zero);

	if (!cfg || !(cfg->flags & TARTAN_CFG_READY))
		return 0;
	return cfg;
}

/* Every verdict goes through here: one per-CPU counter per reason. */
static __always_inline void tartan_count(__u32 id)
{
	__u64 *c = bpf_map_lookup_elem(&tartan_counters, &id);

	if (c)
		*c += 1;
}

/* The subnet entry holding addr_be: every key is {subnet_len, subnet address}. */
static __always_inline struct subnet_value *tartan_subnet_of(const struct config *cfg, __u32 addr_be)
{
	struct subnet_key key = { .prefixlen = cfg->subnet_len, .addr_be = addr_be & cfg->subnet_mask_be };

	return bpf_map_lookup_elem(&tartan_subnets, &key);
}

/* The IPv6 subnet entry holding `addr` (16 bytes, network order). */
static __always_inline struct subnet6_value *tartan_subnet6_of(const struct config *cfg, const __u8 *addr)
{
	struct subnet6_key key = { .prefixlen = cfg->subnet6_len };
	const __u32 *a = (const __u32 *)addr, *m = (const __u32 *)cfg->subnet6_mask;
	__u32 *k = (__u32 *)key.addr;

	k[0] = a[0] & m[0];
	k[1] = a[1] & m[1];
	k[2] = a[2] & m[2];
	k[3] = a[3] & m[3];
	return bpf_map_lookup_elem(&tartan_subnets6, &key);
}

#endif /* TARTAN_MAPS_H */
