/**
 * Follows the registry's leases (list, then watch from that revision), validates each
 * record once, and keeps the backend programmed with the diff between what the
 * registry says and what is programmed. Bad records are skipped, counted and logged
 * once; a failed apply is retried. A remote lease that vanishes stays programmed for a
 * short grace (REMOVAL_GRACE_MS), so a node re-acquiring its deleted lease never loses
 * its peers' routes.
 */
import type { Backend } from "../backend/backend.ts";
import type { NetworkConfig } from "../config/network.ts";
import { decodeLeaseRecord, type Lease } from "../lease/lease.ts";
import { deferRemovals, diffLeases, isEmptyDiff } from "../lease/reconcile.ts";
import { errorText, type Logger } from "../log.ts";
import type { Registry, RegistryRecord, WatchEvent, WatchHandle } from "../registry/registry.ts";
import type { AgentMetrics } from "./status.ts";

/** Changes in one apply from which a full GC follows it (see reconcile). */
const LARGE_BATCH = 1000;
/**
 * How long a remote lease that vanished from the registry stays programmed. A node
 * whose lease is deleted or expires writes it back within ~100 ms on etcd and ~300 ms
 * on sqlite (two 100 ms polls); 3 s covers that under load. The price: a node that
 * really left keeps its route 3 s longer (its subnet given to another node is an
 * update, applied at once).
 */
export const REMOVAL_GRACE_MS = 3000;
/** Changes listed by subnet in the "programmed leases" line up to this many. */
const LOGGED_SUBNETS = 8;

let collecting: ReturnType<typeof setTimeout> | null = null;
function collectSoon(): void {
  if (collecting) return;
  collecting = setTimeout(() => {
    collecting = null;
    Bun.gc(true);
  }, 0);
  collecting.unref?.();
}

export interface LeaseSyncOptions {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  readonly backend: Backend;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** Our subnet key, or null while we hold none. */
  readonly ownKey: () => string | null;
  /** Our lease vanished or changed owner in the registry. */
  readonly onOwnLeaseGone: () => void;
  readonly onRegistryError: (e: unknown) => void;
  readonly onRegistryOk: () => void;
  /** Overrides REMOVAL_GRACE_MS (tests). */
  readonly removalGraceMs?: number;
}

export class LeaseSync {
  readonly leases = new Map<string, Lease>();
  readonly programmed = new Map<string, Lease>();
  revision = 0;
  /** true once the first full list has been applied and nothing is pending. */
  synced = false;
  #watch: WatchHandle | null = null;
  #running: Promise<void> = Promise.resolve();
  #dirty = false;
  #retry: ReturnType<typeof setTimeout> | null = null;
  /** Vanished remote leases still programmed: subnet key → when their grace ends. */
  readonly #held = new Map<string, number>();
  #graceTimer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  /**
   * Nothing is applied before the first full list: an apply of an empty "desired" set
   * would make a backend that adopted a live datapath prune every lease (packets lost).
   */
  #loaded = false;
  /** The backend must see one apply after (re)preparing, even an empty one: it prunes what it adopted. */
  #fullApplyDue = true;
  readonly #badSeen = new Map<string, string>();
  readonly #o: LeaseSyncOptions;

  constructor(o: LeaseSyncOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {
    const { records, revision } = await this.#o.registry.list();
    this.#replace(records);
    this.revision = revision;
    this.#loaded = true;
    await this.reconcile();
    this.#watch = this.#o.registry.watch(revision, {
      onEvents: (events) => this.#onEvents(events),
      onError: (e) => {
        this.#o.metrics.registryErrors++;
        this.#o.onRegistryError(e);
        this.#o.log.warn("registry watch failed; the datapath keeps what it has while it retries", {
          error: errorText(e),
        });
      },
      onRecovered: () => {
        this.#o.onRegistryOk();
        this.#o.log.info("registry watch recovered", { revision: this.revision });
      },
    });
  }

  #accept(rec: RegistryRecord): void {
    const d = decodeLeaseRecord(rec, this.#o.config);
    if (d.ok) {
      this.#badSeen.delete(rec.key);
      this.leases.set(d.lease.key, d.lease);
      return;
    }
    this.leases.delete(rec.key);
    if (this.#badSeen.get(rec.key) !== rec.value) {
      this.#badSeen.set(rec.key, rec.value);
      this.#o.metrics.invalidRecords++;
      this.#o.log.warn("skipping invalid registry record", { key: rec.key, reason: d.reason });
    }
  }

  #replace(records: readonly RegistryRecord[]): void {
    this.leases.clear();
    for (const r of records) this.#accept(r);
  }

  #onEvents(events: readonly WatchEvent[]): void {
    const own = this.#o.ownKey();
    let ownGone = false;
    for (const e of events) {
      if (e.type === "resync") {
        this.#replace(e.records);
        this.revision = e.revision;
        this.#o.log.info("registry resync", { leases: this.leases.size, revision: e.revision });
        if (own && !this.leases.has(own)) ownGone = true;
        continue;
      }
      if (e.type === "put") {
        this.#accept(e.record);
        this.revision = e.record.revision;
      } else {
        this.leases.delete(e.key);
        this.#badSeen.delete(e.key);
        this.revision = e.revision;
        if (e.key === own) ownGone = true;
      }
    }
    this.#o.onRegistryOk();
    void this.reconcile();
    if (ownGone) this.#o.onOwnLeaseGone();
  }

  /** Programs the diff; serialized, coalescing bursts; failures retry after a second. */
  reconcile(): Promise<void> {
    this.#dirty = true;
    this.#running = this.#running.then(async () => {
      if (!this.#dirty || this.#stopped || !this.#loaded) return;
      this.#dirty = false;
      const own = this.#o.ownKey();
      const heldBefore = this.#held.size;
      const { diff, nextAt } = deferRemovals(
        diffLeases(this.leases, this.programmed, own),
        own,
        this.#held,
        Date.now(),
        this.#o.removalGraceMs ?? REMOVAL_GRACE_MS,
      );
      this.#graceEndsAt(nextAt);
      if (this.#held.size > heldBefore)
        this.#o.log.info(
          "remote leases gone from the registry stay programmed for a grace, in case their node re-acquires them",
          {
            held: [...this.#held.keys()].slice(0, LOGGED_SUBNETS),
            count: this.#held.size,
            graceMs: this.#o.removalGraceMs ?? REMOVAL_GRACE_MS,
          },
        );
      if (isEmptyDiff(diff) && !this.#fullApplyDue) {
        this.synced = true;
        return;
      }
      const t0 = performance.now();
      try {
        await this.#o.backend.apply(diff);
        this.#fullApplyDue = false;
        for (const l of diff.remove) this.programmed.delete(l.key);
        for (const l of [...diff.add, ...diff.update]) this.programmed.set(l.key, l);
        this.#o.metrics.lastApplyMs = performance.now() - t0;
        this.synced = true;
        const changes = diff.add.length + diff.update.length + diff.remove.length;
        this.#o.log.info("programmed leases", {
          added: diff.add.length,
          updated: diff.update.length,
          removed: diff.remove.length,
          total: this.programmed.size,
          ms: Math.round(this.#o.metrics.lastApplyMs * 10) / 10,
          // which subnets, when few: lets an outage be timed from the logs of its peers
          ...(changes > 0 && changes <= LOGGED_SUBNETS
            ? {
                subnets: [
                  ...diff.add.map((l) => `+${l.key}`),
                  ...diff.update.map((l) => `~${l.key}`),
                  ...diff.remove.map((l) => `-${l.key}`),
                ].join(" "),
              }
            : {}),
        });
        // A large batch (a first sync, a resync) leaves megabytes of garbage behind:
        // records, parsed JSON, diff arrays. Collect it now, once, rather than let the
        // heap and the allocators keep their high-water mark until the next GC.
        if (diff.add.length + diff.update.length + diff.remove.length >= LARGE_BATCH) collectSoon();
      } catch (e) {
        this.synced = false;
        this.#o.metrics.applyErrors++;
        this.#o.log.error("programming the datapath failed; retrying in 1s", { error: errorText(e) });
        if (this.#retry) clearTimeout(this.#retry);
        this.#retry = setTimeout(() => void this.reconcile(), 1000);
      }
    });
    return this.#running;
  }

  /** Reconciles again when the earliest grace ends (removing what did not come back). */
  #graceEndsAt(at: number | null): void {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    if (at === null || this.#stopped) return;
    this.#graceTimer = setTimeout(() => void this.reconcile(), Math.max(0, at - Date.now()));
    this.#graceTimer.unref?.();
  }

  /** The datapath lost its state (device recreated, maps rebuilt): program everything again. */
  reprogramAll(): Promise<void> {
    this.programmed.clear();
    this.#fullApplyDue = true;
    return this.reconcile();
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.stop();
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
  }
}
