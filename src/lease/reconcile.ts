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
 * Defers the removal of remote leases that vanished from the registry by `graceMs`:
 * a node whose lease was deleted or expired re-acquires the same subnet within a few
 * hundred milliseconds, and a peer that unprogrammed it meanwhile would drop the
 * node's traffic for that long (docs/reliability.md, lease loss). A lease that comes
 * back with the same attributes then never left the datapath; one that comes back from
 * another node is an update and applies at once; one that does not come back is removed
 * when its grace ends. Our own subnet is removed at once. `held` (subnet key → when its
 * grace ends) is the caller's state, kept across calls: entries are added for new
 * removals and dropped once a lease is no longer being removed. Returns the diff to
 * apply now and when the next grace ends (null when none is pending).
 */
export function deferRemovals(
  diff: LeaseDiff,
  ownKey: string | null,
  held: Map<string, number>,
  now: number,
  graceMs: number,
): { diff: LeaseDiff; nextAt: number | null } {
  const removing = new Set(diff.remove.map((l) => l.key));
  for (const key of held.keys()) if (!removing.has(key)) held.delete(key);
  const remove: Lease[] = [];
  let nextAt: number | null = null;
  for (const l of diff.remove) {
    if (l.key === ownKey || graceMs <= 0) {
      held.delete(l.key);
      remove.push(l);
      continue;
    }
    const until = held.get(l.key) ?? now + graceMs;
    if (until <= now) {
      held.delete(l.key);
      remove.push(l);
      continue;
    }
    held.set(l.key, until);
    nextAt = nextAt === null ? until : Math.min(nextAt, until);
  }
  return { diff: remove.length === diff.remove.length ? diff : { ...diff, remove }, nextAt };
}
