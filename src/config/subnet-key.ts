/**
 * flannel's lease key: the IPv4 subnet, and in a dual-stack network the IPv6 subnet after
 * an "&" — `10.5.34.0-24` or `10.5.34.0-24&fc00:0:0:5::-64` (flannel's MakeSubnetKey and
 * ParseSubnetKey, pkg/subnet/subnet.go). The IPv6 subnet lives only in the key; the lease
 * JSON never repeats it. Only the exact text flannel writes is accepted: the key is a
 * lease's identity. Pure.
 */
import { type Cidr, cidrToKey, keyToCidr } from "./cidr.ts";
import { type Cidr6, cidr6ToKey, keyToCidr6 } from "./cidr6.ts";

export interface SubnetPair {
  readonly v4: Cidr;
  /** null in an IPv4-only lease. */
  readonly v6: Cidr6 | null;
}

/** The key flannel writes for a lease of `v4` (and `v6` in a dual-stack network). */
export function subnetKey(v4: Cidr, v6: Cidr6 | null): string {
  return v6 ? `${cidrToKey(v4)}&${cidr6ToKey(v6)}` : cidrToKey(v4);
}

/** Parses "10.5.34.0-24" or "10.5.34.0-24&fc00:0:0:5::-64"; null when it is neither, exactly. */
export function parseSubnetKey(key: string): SubnetPair | null {
  const amp = key.indexOf("&");
  if (amp < 0) {
    const v4 = keyToCidr(key);
    return v4 ? { v4, v6: null } : null;
  }
  const v4 = keyToCidr(key.slice(0, amp));
  const v6 = keyToCidr6(key.slice(amp + 1));
  return v4 && v6 ? { v4, v6 } : null;
}
