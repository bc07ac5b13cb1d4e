/**
 * The IPv6 side of the map bookkeeping (dual stack): a mirror of what tartan_subnets6 and
 * tartan_members6 hold for remote leases' IPv6 sides, and for a lease diff the writes and
 * deletes that bring the maps there — map-plan.ts's rules (members counted per node,
 * written first, deleted last; adopted maps pruned on the first plan) for the IPv6
 * subnets, PublicIPv6 and BackendV6Data of the leases. Pure, like map-plan.ts.
 */
import { SUBNET_LOCAL, type Subnet6Key, type Subnet6Value } from "../../bpf/abi.ts";
import type { Cidr6, Ip6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { remoteEntry6, subnet6KeyOf } from "./facts.ts";

export interface Scope6 {
  readonly vni: number;
  /** The network's IPv6SubnetLen. */
  readonly subnet6Len: number;
}

export interface MapPlan6 {
  readonly memberWrites: ReadonlyArray<readonly [Ip6, number]>;
  readonly subnetWrites: ReadonlyArray<readonly [Subnet6Key, Subnet6Value]>;
  readonly subnetDeletes: readonly Subnet6Key[];
  readonly memberDeletes: readonly Ip6[];
  readonly skipped: ReadonlyArray<{ readonly lease: Lease; readonly reason: string }>;
}

export class ProgrammedMaps6 {
  /** tartan_subnets6 entries of remote leases, by IPv6 subnet address. */
  readonly subnets = new Map<Ip6, Subnet6Value>();
  /** tartan_members6: leases per PublicIPv6. */
  readonly members = new Map<Ip6, number>();
  pruneDue = false;

  clear(): void {
    this.subnets.clear();
    this.members.clear();
    this.pruneDue = false;
  }

  /** As ProgrammedMaps.adopt(): keys of another prefix length are stale, local ones returned. */
  adopt(
    subnets: Iterable<readonly [Subnet6Key, Subnet6Value]>,
    members: Iterable<readonly [Ip6, number]>,
    subnet6Len: number,
  ): { stale: Subnet6Key[]; local: Subnet6Key[] } {
    const stale: Subnet6Key[] = [];
    const local: Subnet6Key[] = [];
    for (const [key, value] of subnets) {
      if (key.prefixLen !== subnet6Len) stale.push(key);
      else if (value.flags & SUBNET_LOCAL) local.push(key);
      else this.subnets.set(key.addr, value);
    }
    for (const [ip6, n] of members) this.members.set(ip6, n);
    this.pruneDue = true;
    return { stale, local };
  }

  commit(plan: MapPlan6): void {
    for (const [k, v] of plan.subnetWrites) this.subnets.set(k.addr, v);
    for (const k of plan.subnetDeletes) this.subnets.delete(k.addr);
    for (const [ip6, n] of plan.memberWrites) this.members.set(ip6, n);
    for (const ip6 of plan.memberDeletes) this.members.delete(ip6);
    this.pruneDue = false;
  }
}

/** What to write to and delete from the IPv6 maps for `diff`, given what they hold. Changes nothing. */
export function planMapWrites6(state: ProgrammedMaps6, diff: LeaseDiff, scope: Scope6): MapPlan6 {
  const upserts: Array<{ key: Subnet6Key; value: Subnet6Value }> = [];
  const drop = new Set<Ip6>();
  const skipped: Array<{ lease: Lease; reason: string }> = [];
  for (const l of diff.remove) if (l.subnet6) drop.add(l.subnet6.ip);
  for (const list of [diff.add, diff.update])
    for (const l of list) {
      const r = remoteEntry6(l, scope.vni, scope.subnet6Len);
      if (r === null || "skip" in r) {
        if (r !== null) skipped.push({ lease: l, reason: r.skip });
        // an update may have taken the IPv6 side away: whatever the map held for this lease goes
        if (l.subnet6) drop.add(l.subnet6.ip);
      } else {
        upserts.push(r);
        drop.delete(r.key.addr);
      }
    }
  if (state.pruneDue) {
    const keep = new Set(upserts.map((r) => r.key.addr));
    for (const k of state.subnets.keys()) if (!keep.has(k)) drop.add(k);
  }
  const next = new Map<Ip6, number>();
  const count = (ip6: Ip6, by: number) => next.set(ip6, (next.get(ip6) ?? state.members.get(ip6) ?? 0) + by);
  const subnetWrites: Array<readonly [Subnet6Key, Subnet6Value]> = [];
  for (const r of upserts) {
    const old = state.subnets.get(r.key.addr);
    if (
      old &&
      old.nodeIp6 === r.value.nodeIp6 &&
      old.vtepMac === r.value.vtepMac &&
      old.flags === r.value.flags
    )
      continue;
    if (old?.nodeIp6 !== r.value.nodeIp6) {
      if (old) count(old.nodeIp6, -1);
      count(r.value.nodeIp6, +1);
    }
    subnetWrites.push([r.key, r.value]);
  }
  const subnetDeletes: Subnet6Key[] = [];
  for (const addr of drop) {
    const old = state.subnets.get(addr);
    if (!old) continue;
    subnetDeletes.push({ prefixLen: scope.subnet6Len, addr });
    count(old.nodeIp6, -1);
  }
  const memberWrites: Array<readonly [Ip6, number]> = [];
  const memberDeletes: Ip6[] = [];
  for (const [ip6, n] of next) {
    if (n > 0) memberWrites.push([ip6, n]);
    else if (state.members.has(ip6)) memberDeletes.push(ip6);
  }
  return { memberWrites, subnetWrites, subnetDeletes, memberDeletes, skipped };
}

/** Our own IPv6 subnet's entry (flagged local), and the local entries to delete (a previous subnet, adopted ones not ours). */
export function planLocalEntry6(
  previous: Cidr6 | null,
  adoptedLocal: readonly Subnet6Key[],
  subnet6: Cidr6,
  value: { nodeIp6: Ip6; vtepMac: string },
): { deletes: Subnet6Key[]; write: readonly [Subnet6Key, Subnet6Value] } {
  const key = subnet6KeyOf(subnet6);
  const same = (k: Subnet6Key) => k.addr === key.addr && k.prefixLen === key.prefixLen;
  const deletes: Subnet6Key[] = [];
  if (previous && !same(subnet6KeyOf(previous))) deletes.push(subnet6KeyOf(previous));
  for (const k of adoptedLocal) if (!same(k)) deletes.push(k);
  return { deletes, write: [key, { ...value, flags: SUBNET_LOCAL }] };
}
