/**
 * What flanneld programs for the vxlan backend (the entries of facts.ts), as `ip -batch`
 * and `bridge -batch` lines, to add and to remove. Pure, so the exact commands are
 * unit-tested.
 */
import type { Lease } from "../../lease/lease.ts";
import { routeLine } from "../facts-shape.ts";
import { expectedEntries, type VxlanPlanInput } from "./facts.ts";

export interface BatchLines {
  /** `ip -batch` lines */
  readonly ip: string[];
  /** `bridge -batch` lines */
  readonly bridge: string[];
}

export function addLines(leases: readonly Lease[], p: VxlanPlanInput): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases) {
    const e = expectedEntries(l, p);
    if (e.neigh)
      ip.push(`neigh replace ${e.neigh.dst} lladdr ${e.neigh.lladdr} dev ${e.neigh.dev} nud permanent`);
    if (e.fdb) bridge.push(`fdb replace ${e.fdb.mac} dev ${e.fdb.dev} dst ${e.fdb.dst} self permanent`);
    ip.push(`route replace ${routeLine(e.route)}`);
  }
  return { ip, bridge };
}

/** Removal of what addLines programmed for these (previously programmed) leases. */
export function removeLines(leases: readonly Lease[], p: VxlanPlanInput): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases) {
    const e = expectedEntries(l, p);
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
