/**
 * A full garbage collection on the next tick, after work that leaves megabytes of
 * garbage behind (a large apply, a doctor run over every lease): collected once, now,
 * rather than held with the heap's and the allocators' high-water mark until the heap
 * grows enough for a collection of its own (bench/CONTROL-PLANE.md). Calls that come
 * before it runs join it.
 */

/** Leases (or changes) from which the work is large enough to collect after. */
export const LARGE_BATCH = 1000;

let collecting: ReturnType<typeof setTimeout> | null = null;

export function collectSoon(): void {
  if (collecting) return;
  collecting = setTimeout(() => {
    collecting = null;
    Bun.gc(true);
  }, 0);
  collecting.unref?.();
}
