/**
 * The removal grace: a remote lease that vanished from the source stays programmed for
 * a short while before it is removed. A node whose lease was deleted or expired writes
 * it back within a few hundred milliseconds (~100 ms on etcd, two 100 ms polls on
 * sqlite); peers that unprogrammed it meanwhile dropped that node's traffic for as long
 * (docs/reliability.md, lease loss). A lease that comes back with the same attributes
 * then never left the datapath; one that comes back from another node is an update and
 * applies at once; one that does not come back is removed when its grace ends. Our own
 * subnet is removed at once. Pure: the caller passes the time and keeps the timer.
 */
import type { LeaseDiff } from "./reconcile.ts";

/**
 * How long a vanished remote lease stays programmed: 3 s covers a re-acquisition under
 * load. The price: a node that really left keeps its route 3 s longer.
 */
export const REMOVAL_GRACE_MS = 3000;

export interface Deferred {
  /** What to apply now: the diff without the removals still in their grace. */
  readonly diff: LeaseDiff;
  /** When the earliest grace ends (reconcile again then); null when none is pending. */
  readonly nextAt: number | null;
  /** Subnet keys whose grace began with this call. */
  readonly newlyHeld: readonly string[];
}

export class RemovalGrace {
  /** Vanished remote leases still programmed: subnet key → when their grace ends. */
  readonly #held = new Map<string, number>();

  constructor(readonly graceMs: number = REMOVAL_GRACE_MS) {}

  /** The leases in their grace now: subnet key → when it ends. */
  get held(): ReadonlyMap<string, number> {
    return this.#held;
  }

  /**
   * Holds back the removals of `diff` (what the source lost, against what is programmed)
   * whose grace has not ended at `now`; a lease no longer being removed (it came back)
   * is forgotten, so a later removal gets a whole grace again.
   */
  defer(diff: LeaseDiff, ownKey: string | null, now: number): Deferred {
    const removing = new Set(diff.remove.map((l) => l.key));
    for (const key of this.#held.keys()) if (!removing.has(key)) this.#held.delete(key);
    const remove: LeaseDiff["remove"][number][] = [];
    const newlyHeld: string[] = [];
    let nextAt: number | null = null;
    for (const l of diff.remove) {
      const until = this.#held.get(l.key) ?? now + this.graceMs;
      if (l.key === ownKey || until <= now) {
        this.#held.delete(l.key);
        remove.push(l);
        continue;
      }
      if (!this.#held.has(l.key)) newlyHeld.push(l.key);
      this.#held.set(l.key, until);
      nextAt = nextAt === null ? until : Math.min(nextAt, until);
    }
    return { diff: remove.length === diff.remove.length ? diff : { ...diff, remove }, nextAt, newlyHeld };
  }
}
