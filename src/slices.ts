/**
 * Long work in the agent (decoding a large list, diffing every lease, building a status
 * of 50,000 leases) runs in slices of SLICE items with a yield to the event loop between
 * them, so HTTP requests and timers are served while it runs.
 */

/** Items per slice: about a millisecond of decoding or diffing. */
export const SLICE = 1000;

/** Lets pending I/O callbacks and timers run before continuing. */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
