/**
 * Choosing our subnet, as flanneld does: reuse the lease that already carries our
 * PublicIP; else the subnet recorded in our previous subnet.env if it is free and valid;
 * else a random free subnet in [SubnetMin, SubnetMax]. Pure: the caller does the atomic
 * create and calls again, excluding what it lost, when a race is lost.
 */
import { type Cidr, cidrToKey, formatCidr, type Ip4, overlaps } from "../config/cidr.ts";
import { isValidSubnet, type NetworkConfig, subnetAt, subnetCapacity } from "../config/network.ts";
import type { Lease } from "./lease.ts";
import { LeaseRefusedError } from "./source.ts";

export type Choice =
  | { readonly kind: "reuse"; readonly lease: Lease }
  | { readonly kind: "new"; readonly subnet: Cidr; readonly why: "previous" | "random" }
  | { readonly kind: "full"; readonly capacity: number };

export interface ChooseInput {
  readonly config: NetworkConfig;
  readonly leases: readonly Lease[];
  readonly publicIp: Ip4;
  /** The subnet this node last held (its subnet.env or state file), if any. */
  readonly previous: Cidr | null;
  /** Subnet keys to skip (lost a race for them this round). */
  readonly exclude?: ReadonlySet<string>;
  /** [0,1) random source; injectable for tests. */
  readonly random?: () => number;
}

/** Is `subnet` inside the lease range and of the right size? */
export function inRange(cfg: NetworkConfig, subnet: Cidr): boolean {
  return isValidSubnet(cfg, subnet) && subnet.ip >= cfg.subnetMin && subnet.ip <= cfg.subnetMax;
}

export function chooseSubnet(input: ChooseInput): Choice {
  const { config: cfg, leases, publicIp } = input;
  const exclude = input.exclude ?? new Set<string>();
  const random = input.random ?? Math.random;
  const mine = leases.find(
    (l) => l.attrs.publicIp === publicIp && inRange(cfg, l.subnet) && !exclude.has(l.key),
  );
  if (mine) return { kind: "reuse", lease: mine };
  const taken = (sn: Cidr) => exclude.has(cidrToKey(sn)) || leases.some((l) => overlaps(l.subnet, sn));
  if (input.previous && inRange(cfg, input.previous) && !taken(input.previous))
    return { kind: "new", subnet: input.previous, why: "previous" };
  const capacity = subnetCapacity(cfg);
  // Collect the free ones lazily: a range can hold 65k subnets, leases are sorted once.
  const takenKeys = new Set<string>(exclude);
  for (const l of leases) if (l.subnet.len === cfg.subnetLen) takenKeys.add(l.key);
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
  return { kind: "new", subnet: pick, why: "random" };
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

/** When to renew: `margin` ms before expiry, never earlier than now. Reservations (null) never renew. */
export function renewAt(expiresAt: number | null, marginMs: number, now: number): number | null {
  if (expiresAt === null) return null;
  return Math.max(now, expiresAt - marginMs);
}
