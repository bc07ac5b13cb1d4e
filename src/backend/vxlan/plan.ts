/**
 * What flanneld programs for the vxlan backend (the entries of facts.ts), as `ip -batch`
 * and `bridge -batch` lines, to add and to remove — for IPv6 too in a dual-stack network
 * (its lines after the IPv4 ones). Pure, so the exact commands are unit-tested.
 */
import type { Lease } from "../../lease/lease.ts";
import { routeLine } from "../facts-shape.ts";
import { expectedEntries, expectedEntries6, type VxlanEntries, type VxlanPlanInput } from "./facts.ts";

/** Every family's entries of a lease: IPv4 when it is a peer there, IPv6 when the plan and the lease have it. */
export type EntriesOf = (lease: Lease, p: VxlanPlanInput) => readonly VxlanEntries[];

/** Both families, each only where the lease is a peer (`peer4`/`peer6` say). */
export function entriesOf(peer4: (l: Lease) => boolean, peer6: (l: Lease) => boolean): EntriesOf {
  return (l, p) => {
    const out: VxlanEntries[] = [];
    if (peer4(l)) out.push(expectedEntries(l, p));
    const e6 = peer6(l) ? expectedEntries6(l, p) : null;
    if (e6) out.push(e6);
    return out;
  };
}

/** IPv4 entries only, as before dual stack: every lease given is a peer. */
const v4Only: EntriesOf = (l, p) => [expectedEntries(l, p)];

export interface BatchLines {
  /** `ip -batch` lines */
  readonly ip: string[];
  /** `bridge -batch` lines */
  readonly bridge: string[];
}

export function addLines(
  leases: readonly Lease[],
  p: VxlanPlanInput,
  entries: EntriesOf = v4Only,
): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases)
    for (const e of entries(l, p)) {
      if (e.neigh)
        ip.push(`neigh replace ${e.neigh.dst} lladdr ${e.neigh.lladdr} dev ${e.neigh.dev} nud permanent`);
      if (e.fdb) bridge.push(`fdb replace ${e.fdb.mac} dev ${e.fdb.dev} dst ${e.fdb.dst} self permanent`);
      ip.push(`route replace ${routeLine(e.route)}`);
    }
  return { ip, bridge };
}

/** Removal of what addLines programmed for these (previously programmed) leases. */
export function removeLines(
  leases: readonly Lease[],
  p: VxlanPlanInput,
  entries: EntriesOf = v4Only,
): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases)
    for (const e of entries(l, p)) {
      if (!e.route.onlink) {
        ip.push(`route del ${routeLine(e.route)}`);
        continue;
      }
      ip.push(`route del ${e.route.dst} dev ${e.route.dev}`);
      ip.push(`neigh del ${e.route.gateway} dev ${e.route.dev}`);
      if (e.fdb) bridge.push(`fdb del ${e.fdb.mac} dev ${e.fdb.dev} dst ${e.fdb.dst} self`);
    }
  return { ip, bridge };
}
