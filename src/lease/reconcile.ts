/**
 * Reconcile: the desired remote leases against what is programmed, as a diff a backend
 * applies. Pure.
 */
import type { Lease } from "./lease.ts";
import { sameAttrs } from "./lease.ts";

export interface LeaseDiff {
  readonly add: readonly Lease[];
  /** Same subnet, new attributes (PublicIP or VTEP MAC changed). */
  readonly update: readonly Lease[];
  readonly remove: readonly Lease[];
}

export const emptyDiff: LeaseDiff = { add: [], update: [], remove: [] };

export function isEmptyDiff(d: LeaseDiff): boolean {
  return d.add.length === 0 && d.update.length === 0 && d.remove.length === 0;
}

/**
 * `desired` and `programmed` are keyed by subnet key. `ownKey` (our subnet) is never
 * programmed as a remote.
 */
export function diffLeases(
  desired: ReadonlyMap<string, Lease>,
  programmed: ReadonlyMap<string, Lease>,
  ownKey: string | null,
): LeaseDiff {
  const add: Lease[] = [];
  const update: Lease[] = [];
  const remove: Lease[] = [];
  for (const [key, lease] of desired) {
    if (key === ownKey) continue;
    const cur = programmed.get(key);
    if (!cur) add.push(lease);
    else if (!sameAttrs(cur.attrs, lease.attrs)) update.push(lease);
  }
  for (const [key, lease] of programmed) if (key === ownKey || !desired.has(key)) remove.push(lease);
  return { add, update, remove };
}

/**
 * The subnets a diff changes as "+added ~updated -removed" keys, or null when it
 * changes none or more than `max` (a peer's log then times an outage of one lease).
 */
export function diffSubnets(d: LeaseDiff, max: number): string | null {
  const n = d.add.length + d.update.length + d.remove.length;
  if (n === 0 || n > max) return null;
  return [
    ...d.add.map((l) => `+${l.key}`),
    ...d.update.map((l) => `~${l.key}`),
    ...d.remove.map((l) => `-${l.key}`),
  ].join(" ");
}
