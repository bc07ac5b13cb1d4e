/**
 * Reconcile: the desired remote leases against what is programmed, as a diff a backend
 * applies. Pure. A diff is built key by key (`diffKey`), so a caller that knows which
 * keys changed since the last apply diffs only those (`diffKeys`: constant work per
 * registry change) and a full comparison (`diffLeases`: first list, resync) is the same
 * rule over every key.
 */
import type { Lease } from "./lease.ts";
import { sameAttrs } from "./lease.ts";

export interface LeaseDiff {
  readonly add: readonly Lease[];
  /** Same subnet, new attributes (PublicIP or VTEP MAC changed). */
  readonly update: readonly Lease[];
  readonly remove: readonly Lease[];
}

/** A diff under construction. */
export interface DiffBuilder {
  readonly add: Lease[];
  readonly update: Lease[];
  readonly remove: Lease[];
}

export const emptyDiff: LeaseDiff = { add: [], update: [], remove: [] };

export function newDiff(): DiffBuilder {
  return { add: [], update: [], remove: [] };
}

export function isEmptyDiff(d: LeaseDiff): boolean {
  return d.add.length === 0 && d.update.length === 0 && d.remove.length === 0;
}

export function diffSize(d: LeaseDiff): number {
  return d.add.length + d.update.length + d.remove.length;
}

/**
 * The change for one key: `want` is the desired lease (undefined when there is none),
 * `have` what is programmed. `ownKey` (our subnet) is never programmed as a remote.
 */
export function diffKey(
  out: DiffBuilder,
  key: string,
  want: Lease | undefined,
  have: Lease | undefined,
  ownKey: string | null,
): void {
  if (want === undefined || key === ownKey) {
    if (have !== undefined) out.remove.push(have);
  } else if (have === undefined) out.add.push(want);
  else if (have !== want && !sameAttrs(have.attrs, want.attrs)) out.update.push(want);
}

/** The diff for the given keys only (the ones that changed since the last apply). */
export function diffKeys(
  keys: Iterable<string>,
  desired: ReadonlyMap<string, Lease>,
  programmed: ReadonlyMap<string, Lease>,
  ownKey: string | null,
): LeaseDiff {
  const out = newDiff();
  for (const key of keys) diffKey(out, key, desired.get(key), programmed.get(key), ownKey);
  return out;
}

/**
 * The diff over every key. `desired` and `programmed` are keyed by subnet key. `ownKey`
 * (our subnet) is never programmed as a remote.
 */
export function diffLeases(
  desired: ReadonlyMap<string, Lease>,
  programmed: ReadonlyMap<string, Lease>,
  ownKey: string | null,
): LeaseDiff {
  const out = newDiff();
  for (const [key, lease] of desired) diffKey(out, key, lease, programmed.get(key), ownKey);
  for (const [key, lease] of programmed) if (!desired.has(key)) out.remove.push(lease);
  return out;
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
