/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* csum.h - IPv4 header checksum helpers. */
#ifndef TARTAN_CSUM_H
#define TARTAN_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of an option-less IPv4 header whose check field is zero. */
static __always_inline __u16 ipv4_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	return csum_fold32(sum);
}

/* RFC 1624 incremental update of a checksum for one changed 16-bit word. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	return csum_fold32(sum);
}

/* Decrements the TTL of an IPv4 header in place, fixing its checksum exactly as the
 * kernel's ip_decrease_ttl() does (so forwarded bytes match the kernel's). */
static __always_inline void ipv4_dec_ttl(struct iphdr *iph)
{
	__u32 check = (__u32)iph->check;

	check += (__u32)bpf_htons(0x0100);
	iph->check = (__u16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

/* Sum of `n` 16-bit words (as they lie in memory), unfolded; n a constant. */
#define csum_words(p, n)                                                                 \
	({                                                                               \
		const __u16 *_w = (const __u16 *)(p);                                    \
		__u32 _s = 0;                                                            \
		_Pragma("unroll") for (int _i = 0; _i < (n); _i++) _s += _w[_i];         \
		_s;                                                                      \
	})

/* One's complement sum of 32-bit sums, folded to 16 bits (not inverted). */
static __always_inline __u16 csum_add_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

#endif /* TARTAN_CSUM_H */
