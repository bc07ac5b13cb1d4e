/**
 * When does an etcd lease expire? etcd keeps a key's expiry in its lease, which a
 * key names by id; reading it costs one LeaseTimeToLive RPC. flannel does that RPC for
 * every key on every list; this cache does it once per lease id instead.
 *
 * A flannel (and Tartan) node never keeps a lease alive: it renews by granting a NEW
 * lease and rewriting its key. So a lease id's expiry is fixed once known, and the
 * cache only asks about ids it has not seen: a cluster of 10,000 nodes costs 10,000
 * small RPCs (at bounded concurrency) on the first list, then one per renewal. An entry
 * whose expiry has passed while its key is still live is asked again (someone did keep
 * that lease alive, or etcd is about to delete the key). Leases this process grants are
 * remembered without asking.
 */

/** Asks etcd for a lease's remaining TTL in seconds; null when the lease no longer exists. */
export type TtlLookup = (leaseId: string) => Promise<number | null>;

/** etcd's "no lease": the key is a reservation. */
export const NO_LEASE = "0";

export class LeaseExpiryCache {
  readonly #expiry = new Map<string, number>();
  #highWater = 1024;

  constructor(
    private readonly lookup: TtlLookup,
    private readonly concurrency = 64,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.#expiry.size;
  }

  /** Records the expiry of a lease this process granted. */
  remember(leaseId: string, expiresAt: number): void {
    this.#expiry.set(leaseId, expiresAt);
  }

  /** Makes `expiryOf` answer for every id in `ids`: looks up the unknown and the stale ones. */
  async resolve(ids: Iterable<string>): Promise<void> {
    const now = this.now();
    const todo = new Set<string>();
    for (const id of ids) {
      if (id === NO_LEASE) continue;
      const e = this.#expiry.get(id);
      if (e === undefined || e <= now) todo.add(id);
    }
    if (todo.size > 0) {
      const queue = [...todo];
      const worker = async () => {
        for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
          const t0 = this.now();
          const ttl = await this.lookup(id);
          // a lease that is gone expires now: etcd is deleting its keys
          this.#expiry.set(id, ttl === null ? t0 : t0 + ttl * 1000);
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.concurrency, queue.length) }, worker));
    }
    this.#trim();
  }

  /** The expiry of a lease (ms since the epoch); null for NO_LEASE. Call `resolve` first. */
  expiryOf(leaseId: string): number | null {
    if (leaseId === NO_LEASE) return null;
    // not resolved (a caller bug): say "now" rather than "never"
    return this.#expiry.get(leaseId) ?? this.now();
  }

  /** Forgets every lease not in `live` (after a full list). */
  retainOnly(live: ReadonlySet<string>): void {
    for (const id of this.#expiry.keys()) if (!live.has(id)) this.#expiry.delete(id);
    this.#highWater = Math.max(1024, 2 * this.#expiry.size);
  }

  /** Keeps memory bounded between lists: drops long-expired leases when the cache has doubled. */
  #trim(): void {
    if (this.#expiry.size <= this.#highWater) return;
    const cutoff = this.now() - 60_000;
    for (const [id, e] of this.#expiry) if (e < cutoff) this.#expiry.delete(id);
    this.#highWater = Math.max(1024, 2 * this.#expiry.size);
  }
}
