/**
 * Choosing our subnet, as flanneld does: reuse the lease that already carries our
 * PublicIP; else the subnet recorded in our previous subnet.env if it is free and valid;
 * else a random free subnet in [SubnetMin, SubnetMax]. In a dual-stack network every lease
 * holds an IPv6 subnet too, chosen the same way in [IPv6SubnetMin, IPv6SubnetMax]. Pure:
 * the caller does the atomic create and calls again, excluding what it lost, when a race
 * is lost.
 */
import { type Cidr, cidrToKey, formatCidr, type Ip4, overlaps } from "../config/cidr.ts";
import { type Cidr6, cidr6ToKey, formatCidr6, overlaps6 } from "../config/cidr6.ts";
import {
  type Ipv6NetworkConfig,
  isValidSubnet,
  isValidSubnet6,
  type NetworkConfig,
  subnetAt,
  subnetAt6,
  subnetCapacity,
  subnetCapacity6,
} from "../config/network.ts";
import { parseSubnetKey } from "../config/subnet-key.ts";
import type { Lease } from "./lease.ts";
import { LeaseRefusedError } from "./source.ts";

export type Choice =
  | { readonly kind: "reuse"; readonly lease: Lease }
  | {
      readonly kind: "new";
      readonly subnet: Cidr;
      /** Dual stack: the IPv6 subnet to lease with it (null in an IPv4-only network). */
      readonly subnet6?: Cidr6 | null;
      readonly why: "previous" | "random";
    }
  /**
   * The lease carrying our PublicIP fits the IPv4 side of the config but not the IPv6 one
   * (IPv6 was turned on or off, or IPv6Network changed): keep its IPv4 subnet, pair it with
   * `subnet6` under a new key. flanneld deletes such a lease and starts over with a random
   * IPv4 subnet, which renumbers the node's pods for nothing.
   */
  | { readonly kind: "rekey"; readonly lease: Lease; readonly subnet6: Cidr6 | null }
  | { readonly kind: "full"; readonly capacity: number }
  | { readonly kind: "full6"; readonly capacity: bigint };

export interface ChooseInput {
  readonly config: NetworkConfig;
  readonly leases: readonly Lease[];
  readonly publicIp: Ip4;
  /** The subnet this node last held (its subnet.env or state file), if any. */
  readonly previous: Cidr | null;
  /** Dual stack: the IPv6 subnet this node last held, if any. */
  readonly previous6?: Cidr6 | null;
  /** Subnet keys to skip (lost a race for them this round). */
  readonly exclude?: ReadonlySet<string>;
  /** [0,1) random source; injectable for tests. */
  readonly random?: () => number;
}

/** Is `subnet` inside the lease range and of the right size? */
export function inRange(cfg: NetworkConfig, subnet: Cidr): boolean {
  return isValidSubnet(cfg, subnet) && subnet.ip >= cfg.subnetMin && subnet.ip <= cfg.subnetMax;
}

/** Is `subnet` inside the IPv6 lease range and of the right size? */
export function inRange6(c6: Ipv6NetworkConfig, subnet: Cidr6): boolean {
  return isValidSubnet6(c6, subnet) && subnet.ip >= c6.subnetMin && subnet.ip <= c6.subnetMax;
}

/** Does the lease's IPv6 side fit the config: an IPv6 subnet in range when it is dual stack, none when not? */
export function fitsIpv6(cfg: NetworkConfig, lease: Lease): boolean {
  const c6 = cfg.ipv6 ?? null;
  const sn6 = lease.subnet6 ?? null;
  return c6 === null ? sn6 === null : sn6 !== null && inRange6(c6, sn6);
}

/** The two halves of the excluded keys, each by its own key form. */
function splitExcluded(exclude: ReadonlySet<string>): { v4: Set<string>; v6: Set<string> } {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const key of exclude) {
    const pair = parseSubnetKey(key);
    if (!pair) continue;
    v4.add(cidrToKey(pair.v4));
    if (pair.v6) v6.add(cidr6ToKey(pair.v6));
  }
  return { v4, v6 };
}

/**
 * A free IPv6 subnet: `preferred` when it is in range and free, else one at random among the
 * first 100 free ones from IPv6SubnetMin up (flannel's rule, as for IPv4). Null when none is free.
 */
export function chooseSubnet6(
  c6: Ipv6NetworkConfig,
  leases: readonly Lease[],
  excluded6: ReadonlySet<string>,
  preferred: Cidr6 | null,
  random: () => number,
): Cidr6 | null {
  const held = leases.flatMap((l) => (l.subnet6 ? [l.subnet6] : []));
  const takenKeys = new Set<string>(excluded6);
  for (const sn of held) if (sn.len === c6.subnetLen) takenKeys.add(cidr6ToKey(sn));
  // leases of another length never decode (decodeLeaseRecord); overlap catches them anyway
  const odd = held.filter((sn) => sn.len !== c6.subnetLen);
  const taken = (sn: Cidr6) => takenKeys.has(cidr6ToKey(sn)) || odd.some((o) => overlaps6(o, sn));
  if (preferred && inRange6(c6, preferred) && !taken(preferred)) return preferred;
  const capacity = subnetCapacity6(c6);
  const free: Cidr6[] = [];
  // the range can hold 2^62 subnets: each taken one costs one step, so this many find 100 free
  const steps = BigInt(takenKeys.size + 100);
  const end = capacity < steps ? capacity : steps;
  for (let i = 0n; i < end && free.length < 100; i++) {
    const sn = subnetAt6(c6, i);
    if (!taken(sn)) free.push(sn);
  }
  return free.length === 0 ? null : free[Math.floor(random() * free.length)]!;
}

export function chooseSubnet(input: ChooseInput): Choice {
  const { config: cfg, leases, publicIp } = input;
  const exclude = input.exclude ?? new Set<string>();
  const random = input.random ?? Math.random;
  const c6 = cfg.ipv6 ?? null;
  const excluded = c6 ? splitExcluded(exclude) : { v4: exclude, v6: new Set<string>() };
  const mine = leases.find(
    (l) => l.attrs.publicIp === publicIp && inRange(cfg, l.subnet) && !exclude.has(l.key),
  );
  if (mine) {
    if (fitsIpv6(cfg, mine)) return { kind: "reuse", lease: mine };
    if (!c6) return { kind: "rekey", lease: mine, subnet6: null };
    const others = leases.filter((l) => l !== mine);
    const sn6 = chooseSubnet6(c6, others, excluded.v6, input.previous6 ?? null, random);
    return sn6
      ? { kind: "rekey", lease: mine, subnet6: sn6 }
      : { kind: "full6", capacity: subnetCapacity6(c6) };
  }
  const withV6 = (subnet: Cidr, why: "previous" | "random"): Choice => {
    if (!c6) return { kind: "new", subnet, why };
    // the previous IPv6 subnet goes with the previous IPv4 one, as in flannel
    const sn6 = chooseSubnet6(
      c6,
      leases,
      excluded.v6,
      why === "previous" ? (input.previous6 ?? null) : null,
      random,
    );
    return sn6
      ? { kind: "new", subnet, subnet6: sn6, why }
      : { kind: "full6", capacity: subnetCapacity6(c6) };
  };
  const taken = (sn: Cidr) => excluded.v4.has(cidrToKey(sn)) || leases.some((l) => overlaps(l.subnet, sn));
  if (input.previous && inRange(cfg, input.previous) && !taken(input.previous))
    return withV6(input.previous, "previous");
  const capacity = subnetCapacity(cfg);
  // Collect the free ones lazily: a range can hold 65k subnets, leases are sorted once.
  const takenKeys = new Set<string>(excluded.v4);
  for (const l of leases) if (l.subnet.len === cfg.subnetLen) takenKeys.add(cidrToKey(l.subnet));
  const odd = leases.filter((l) => l.subnet.len !== cfg.subnetLen);
  const free: Cidr[] = [];
  for (let i = 0; i < capacity; i++) {
    const sn = subnetAt(cfg, i);
    if (takenKeys.has(cidrToKey(sn))) continue;
    if (odd.length > 0 && odd.some((l) => overlaps(l.subnet, sn))) continue;
    free.push(sn);
    // flannel picks among the first 100 free subnets; the same spread keeps lookups cheap
    if (free.length >= 100) break;
  }
  if (free.length === 0) return { kind: "full", capacity };
  const pick = free[Math.floor(random() * free.length)]!;
  return withV6(pick, "random");
}

export class NoFreeSubnetError extends LeaseRefusedError {
  override name = "NoFreeSubnetError";
  constructor(cfg: NetworkConfig, capacity: number) {
    super(
      `no free subnet: all ${capacity} /${cfg.subnetLen} subnets between SubnetMin and SubnetMax of ${formatCidr(cfg.network)} are leased; ` +
        "free one (tartan leases; delete a stale lease) or widen the network config",
    );
  }
}

export class NoFreeSubnet6Error extends LeaseRefusedError {
  override name = "NoFreeSubnet6Error";
  constructor(c6: Ipv6NetworkConfig, capacity: bigint) {
    super(
      `no free IPv6 subnet: all ${capacity} /${c6.subnetLen} subnets between IPv6SubnetMin and IPv6SubnetMax of ${formatCidr6(c6.network)} are leased; ` +
        "free one (tartan leases; delete a stale lease) or widen the network config",
    );
  }
}

/** When to renew: `margin` ms before expiry, never earlier than now. Reservations (null) never renew. */
export function renewAt(expiresAt: number | null, marginMs: number, now: number): number | null {
  if (expiresAt === null) return null;
  return Math.max(now, expiresAt - marginMs);
}
