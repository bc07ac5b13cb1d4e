/**
 * The map bookkeeping of the ebpf-vxlan backend, pure: a mirror of what the subnet and
 * member maps hold for remote leases, and for a lease diff the plan of writes and
 * deletes that brings the maps there. A node's member entry counts its programmed
 * leases, so a node holding two subnets stays a member until the last one goes. The
 * plan is ordered for the datapath's sake: members are written first (a node is
 * accepted before we send to it) and deleted last. No I/O: the backend writes the plan
 * to the kernel maps (one batch per map and kind), then commits it to the mirror.
 */
import { SUBNET_LOCAL, type SubnetKey, type SubnetValue } from "../../bpf/abi.ts";
import type { Cidr, Ip4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import type { PeerScope } from "../facts-shape.ts";
import { type RemoteEntry, remoteEntry, subnetKeyOf } from "./facts.ts";

export interface MapPlan {
  /** Member entries to write (node IP → leases): before any subnet entry. */
  readonly memberWrites: ReadonlyArray<readonly [Ip4, number]>;
  readonly subnetWrites: ReadonlyArray<readonly [SubnetKey, SubnetValue]>;
  readonly subnetDeletes: readonly SubnetKey[];
  /** Nodes with no programmed lease left: deleted after the subnet entries. */
  readonly memberDeletes: readonly Ip4[];
  /** Leases that cannot be reached over VXLAN from here, with the reason: never in the map. */
  readonly skipped: ReadonlyArray<{ readonly lease: Lease; readonly reason: string }>;
}

/** What the subnet and member maps hold for remote leases (every subnet key has the network's SubnetLen). */
export class ProgrammedMaps {
  /** Subnet-map entries of remote leases, by subnet address. */
  readonly subnets = new Map<Ip4, SubnetValue>();
  /** Member-map entries: leases per node IP. */
  readonly members = new Map<Ip4, number>();
  /** Maps adopted from a previous run may hold leases deleted while no agent ran: the next plan prunes them. */
  pruneDue = false;

  clear(): void {
    this.subnets.clear();
    this.members.clear();
    this.pruneDue = false;
  }

  /**
   * Takes over what adopted maps hold. Returns the keys of another prefix length (SubnetLen
   * changed: never looked up, to delete) and the local-subnet keys found (setLocal keeps ours).
   */
  adopt(
    subnets: Iterable<readonly [SubnetKey, SubnetValue]>,
    members: Iterable<readonly [Ip4, number]>,
    subnetLen: number,
  ): { stale: SubnetKey[]; local: SubnetKey[] } {
    const stale: SubnetKey[] = [];
    const local: SubnetKey[] = [];
    for (const [key, value] of subnets) {
      if (key.prefixLen !== subnetLen) stale.push(key);
      else if (value.flags & SUBNET_LOCAL) local.push(key);
      else this.subnets.set(key.addr, value);
    }
    for (const [ip4, n] of members) this.members.set(ip4, n);
    this.pruneDue = true;
    return { stale, local };
  }

  /** Records our local entry the maps now hold: a remote entry it took over is forgotten. */
  commitLocal(plan: LocalPlan): void {
    if (!plan.takeover) return;
    this.subnets.delete(plan.write[0].addr);
    if (plan.takeover.members > 0) this.members.set(plan.takeover.nodeIp, plan.takeover.members);
    else this.members.delete(plan.takeover.nodeIp);
  }

  /** Records a plan the maps now hold. */
  commit(plan: MapPlan): void {
    for (const [k, v] of plan.subnetWrites) this.subnets.set(k.addr, v);
    for (const k of plan.subnetDeletes) this.subnets.delete(k.addr);
    for (const [ip4, n] of plan.memberWrites) this.members.set(ip4, n);
    for (const ip4 of plan.memberDeletes) this.members.delete(ip4);
    this.pruneDue = false;
  }
}

function sameValue(a: SubnetValue, b: SubnetValue): boolean {
  return a.nodeIp === b.nodeIp && a.vtepMac === b.vtepMac && a.flags === b.flags;
}

/** The subnet-map entries a diff wants (upserts) and the subnet addresses it wants gone. */
function wanted(
  state: ProgrammedMaps,
  diff: LeaseDiff,
  scope: PeerScope,
): { upserts: RemoteEntry[]; drop: Set<Ip4>; skipped: MapPlan["skipped"][number][] } {
  const upserts: RemoteEntry[] = [];
  const drop = new Set<Ip4>();
  const skipped: MapPlan["skipped"][number][] = [];
  for (const l of diff.remove) drop.add(l.subnet.ip);
  for (const list of [diff.add, diff.update])
    for (const l of list) {
      const r = remoteEntry(l, scope.vni, scope.subnetLen);
      if ("skip" in r) {
        skipped.push({ lease: l, reason: r.skip });
        drop.add(l.subnet.ip);
      } else {
        upserts.push(r);
        drop.delete(r.key.addr);
      }
    }
  if (state.pruneDue) {
    const keep = new Set(upserts.map((r) => r.key.addr));
    for (const k of state.subnets.keys()) if (!keep.has(k)) drop.add(k);
  }
  return { upserts, drop, skipped };
}

/** What to write to and delete from the maps for `diff`, given what they hold. Changes nothing. */
export function planMapWrites(state: ProgrammedMaps, diff: LeaseDiff, scope: PeerScope): MapPlan {
  const { upserts, drop, skipped } = wanted(state, diff, scope);
  // member counts after this diff, from the counts the maps hold now
  const next = new Map<Ip4, number>();
  const count = (ip4: Ip4, by: number) => next.set(ip4, (next.get(ip4) ?? state.members.get(ip4) ?? 0) + by);
  const subnetWrites: Array<readonly [SubnetKey, SubnetValue]> = [];
  for (const r of upserts) {
    const old = state.subnets.get(r.key.addr);
    if (old && sameValue(old, r.value)) continue; // already in the map as wanted
    if (old?.nodeIp !== r.value.nodeIp) {
      if (old) count(old.nodeIp, -1);
      count(r.value.nodeIp, +1);
    }
    subnetWrites.push([r.key, r.value]);
  }
  const subnetDeletes: SubnetKey[] = [];
  for (const addr of drop) {
    const old = state.subnets.get(addr);
    if (!old) continue;
    subnetDeletes.push({ prefixLen: scope.subnetLen, addr });
    count(old.nodeIp, -1);
  }
  const memberWrites: Array<readonly [Ip4, number]> = [];
  const memberDeletes: Ip4[] = [];
  for (const [ip4, n] of next) {
    if (n > 0) memberWrites.push([ip4, n]);
    else if (state.members.has(ip4)) memberDeletes.push(ip4);
  }
  return { memberWrites, subnetWrites, subnetDeletes, memberDeletes, skipped };
}

export interface LocalPlan {
  /** Local entries to delete: the subnet held before, adopted ones that are not ours. */
  readonly deletes: readonly SubnetKey[];
  readonly write: readonly [SubnetKey, SubnetValue];
  /**
   * Our subnet was programmed for another node (its lease vanished and is still in its
   * removal grace): the local entry replaces that one, and its node keeps `members`
   * leases (0: no longer a member).
   */
  readonly takeover: { readonly nodeIp: Ip4; readonly members: number } | null;
}

/**
 * Our own subnet's entry (flagged local: decap delivers it, encap leaves it to the
 * stack): written for `subnet`; deleted for the subnet we held before and for local
 * entries of adopted maps that are not ours — unless the entry there is already another
 * node's (`state` holds it as a remote lease): when our lease was lost and its subnet
 * taken over, the new owner's entry may be programmed before we move to our new subnet.
 * The other way round, a subnet we take that is still programmed for its previous node
 * is taken over (commitLocal forgets the remote entry, so that lease's removal, which
 * follows, does not delete the key: our local entry).
 */
export function planLocalEntry(
  state: ProgrammedMaps,
  previous: Cidr | null,
  adoptedLocal: readonly SubnetKey[],
  subnet: Cidr,
  value: { nodeIp: Ip4; vtepMac: string },
): LocalPlan {
  const key = subnetKeyOf(subnet);
  const same = (k: SubnetKey) => k.addr === key.addr && k.prefixLen === key.prefixLen;
  const candidates = [...(previous ? [subnetKeyOf(previous)] : []), ...adoptedLocal];
  const deletes = candidates.filter((k) => !same(k) && !state.subnets.has(k.addr));
  const remote = state.subnets.get(key.addr);
  const takeover = remote
    ? { nodeIp: remote.nodeIp, members: (state.members.get(remote.nodeIp) ?? 1) - 1 }
    : null;
  return { deletes, write: [key, { ...value, flags: SUBNET_LOCAL }], takeover };
}
