/**
 * Follows every lease of the source (list, then watch from that revision), validates
 * each record once, and keeps the backend programmed with the diff between what the
 * source says and what is programmed. Bad records are skipped, counted and logged once;
 * a failed apply is retried; our own lease deleted (or taken by another PublicIP) is
 * reported so the keeper acquires again. A remote lease that vanishes stays programmed
 * for a short grace (removal-grace.ts), so a node re-acquiring its deleted lease never
 * loses its peers' routes.
 */
import type { Backend } from "../backend/backend.ts";
import type { NetworkConfig } from "../config/network.ts";
import { type DecodeResult, decodeLeaseRecord, type Lease } from "../lease/lease.ts";
import { diffLeases, diffSubnets, isEmptyDiff, type LeaseDiff } from "../lease/reconcile.ts";
import { REMOVAL_GRACE_MS, RemovalGrace } from "../lease/removal-grace.ts";
import type { LeaseEvent, LeaseRecord, LeaseSource, WatchHandle } from "../lease/source.ts";
import { errorText, type Logger } from "../log.ts";
import type { AgentMetrics } from "../status/status.ts";
import type { SourceHealth } from "./source-health.ts";
import { StoppableSleep } from "./stoppable-sleep.ts";

/** Changes in one apply from which a full GC follows it (see reconcile). */
const LARGE_BATCH = 1000;
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
  readonly source: Pick<LeaseSource, "list" | "watch">;
  readonly config: NetworkConfig;
  readonly backend: Pick<Backend, "apply">;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly health: SourceHealth;
  /** Our lease, or null while we hold none. */
  readonly ownLease: () => Lease | null;
  /**
   * Our subnet key, also while a lost lease is re-acquired (default: ownLease's): the
   * source's put of our own lease is then never programmed as a remote one.
   */
  readonly ownKey?: () => string | null;
  /** Our lease vanished from the source or now carries another PublicIP. */
  readonly onOwnLeaseGone: () => void;
  /** Wait before retrying a failed apply (default 1 s). */
  readonly retryMs?: number;
  /** How long a vanished remote lease stays programmed (default REMOVAL_GRACE_MS). */
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
  readonly #grace: RemovalGrace;
  #graceTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #sleep = new StoppableSleep();
  /**
   * Nothing is applied before the first full list: an apply of an empty "desired" set
   * would make a backend that adopted a live datapath prune every lease (packets lost).
   */
  #loaded = false;
  /** The backend must see one apply after (re)preparing, even an empty one: it prunes what it adopted. */
  #fullApplyDue = true;
  #firstSynced: () => void = () => {};
  readonly #firstSync = new Promise<void>((r) => {
    this.#firstSynced = r;
  });
  readonly #badSeen = new Map<string, string>();
  readonly #o: LeaseSyncOptions;

  constructor(o: LeaseSyncOptions) {
    this.#o = o;
    this.#grace = new RemovalGrace(o.removalGraceMs ?? REMOVAL_GRACE_MS);
  }

  /**
   * Lists (retrying while the source fails), starts the watch, and resolves once that
   * list is programmed (or on stop). Apply failures are retried meanwhile.
   */
  async start(): Promise<void> {
    const first = await this.#listUntilOk();
    if (!first) return;
    this.#replace(first.records);
    this.revision = first.revision;
    this.#loaded = true;
    this.#watch = this.#o.source.watch(first.revision, {
      onEvents: (events) => this.#onEvents(events),
      onError: (e) => {
        this.#o.health.failed(e);
        this.#o.log.warn("registry watch failed; the datapath keeps what it has while it retries", {
          error: errorText(e),
        });
      },
      onRecovered: () => {
        this.#o.health.ok();
        this.#o.log.info("registry watch recovered", { revision: this.revision });
      },
    });
    await this.reconcile();
    await this.#firstSync;
  }

  async #listUntilOk(): Promise<{ records: readonly LeaseRecord[]; revision: number } | null> {
    let backoff = 500;
    while (!this.#sleep.stopped) {
      try {
        const r = await this.#o.source.list();
        this.#o.health.ok();
        return r;
      } catch (e) {
        this.#o.health.failed(e);
        this.#o.log.warn("listing the leases failed, retrying", { error: errorText(e), retryInMs: backoff });
        await this.#sleep.sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
    return null;
  }

  #decode(rec: LeaseRecord): DecodeResult {
    return rec.invalid !== undefined
      ? { ok: false, reason: rec.invalid }
      : decodeLeaseRecord(rec, this.#o.config);
  }

  #accept(rec: LeaseRecord): void {
    const d = this.#decode(rec);
    if (d.ok) {
      this.#badSeen.delete(rec.key);
      this.leases.set(d.lease.key, d.lease);
      return;
    }
    this.leases.delete(rec.key);
    const seen = `${rec.invalid ?? ""}\0${rec.value}`;
    if (this.#badSeen.get(rec.key) !== seen) {
      this.#badSeen.set(rec.key, seen);
      this.#o.metrics.invalidRecords++;
      this.#o.log.warn("skipping invalid registry record", { key: rec.key, reason: d.reason });
    }
  }

  #replace(records: readonly LeaseRecord[]): void {
    this.leases.clear();
    for (const r of records) this.#accept(r);
  }

  #onEvents(events: readonly LeaseEvent[]): void {
    for (const e of events) {
      if (e.type === "resync") {
        this.#replace(e.records);
        this.revision = e.revision;
        this.#o.log.info("registry resync", { leases: this.leases.size, revision: e.revision });
      } else if (e.type === "put") {
        this.#accept(e.record);
        this.revision = e.record.revision;
      } else {
        this.leases.delete(e.key);
        this.#badSeen.delete(e.key);
        this.revision = e.revision;
      }
    }
    this.#o.health.ok();
    const own = this.#o.ownLease();
    const now = own ? this.leases.get(own.key) : undefined;
    // gone, or rewritten by a node with another PublicIP (ours expired and was taken)
    const ownGone = own !== null && (!now || now.attrs.publicIp !== own.attrs.publicIp);
    void this.reconcile();
    if (ownGone) this.#o.onOwnLeaseGone();
  }

  /** Programs the diff; serialized, coalescing bursts; failures retry after `retryMs`. */
  reconcile(): Promise<void> {
    this.#dirty = true;
    this.#running = this.#running.then(() => this.#reconcileOnce());
    return this.#running;
  }

  async #reconcileOnce(): Promise<void> {
    if (!this.#dirty || this.#sleep.stopped || !this.#loaded) return;
    this.#dirty = false;
    const diff = this.#deferRemovals();
    if (isEmptyDiff(diff) && !this.#fullApplyDue) {
      this.#synced();
      return;
    }
    const t0 = performance.now();
    try {
      await this.#o.backend.apply(diff);
      this.#fullApplyDue = false;
      for (const l of diff.remove) this.programmed.delete(l.key);
      for (const l of [...diff.add, ...diff.update]) this.programmed.set(l.key, l);
      this.#o.metrics.lastApplyMs = performance.now() - t0;
      this.#synced();
      const subnets = diffSubnets(diff, LOGGED_SUBNETS);
      this.#o.log.info("programmed leases", {
        added: diff.add.length,
        updated: diff.update.length,
        removed: diff.remove.length,
        total: this.programmed.size,
        ms: Math.round(this.#o.metrics.lastApplyMs * 10) / 10,
        // which subnets, when few: an outage of one lease can be timed from its peers' logs
        ...(subnets === null ? {} : { subnets }),
      });
      // A large batch (a first sync, a resync) leaves megabytes of garbage behind:
      // records, parsed JSON, diff arrays. Collect it now, once, rather than let the
      // heap and the allocators keep their high-water mark until the next GC.
      if (diff.add.length + diff.update.length + diff.remove.length >= LARGE_BATCH) collectSoon();
    } catch (e) {
      this.synced = false;
      this.#o.metrics.applyErrors++;
      const retryMs = this.#o.retryMs ?? 1000;
      this.#o.log.error("programming the datapath failed; retrying", {
        error: errorText(e),
        retryInMs: retryMs,
      });
      if (this.#retry) clearTimeout(this.#retry);
      this.#retry = setTimeout(() => void this.reconcile(), retryMs);
    }
  }

  /** The diff to apply now: removals of vanished remote leases wait out their grace (a timer comes back for them). */
  #deferRemovals(): LeaseDiff {
    const own = this.#o.ownKey?.() ?? this.#o.ownLease()?.key ?? null;
    const d = this.#grace.defer(diffLeases(this.leases, this.programmed, own), own, Date.now());
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    if (d.nextAt !== null && !this.#sleep.stopped) {
      this.#graceTimer = setTimeout(() => void this.reconcile(), Math.max(0, d.nextAt - Date.now()));
      this.#graceTimer.unref?.();
    }
    if (d.newlyHeld.length > 0)
      this.#o.log.info(
        "remote leases gone from the registry stay programmed for a grace, in case their node re-acquires them",
        {
          held: d.newlyHeld.slice(0, LOGGED_SUBNETS).join(" "),
          count: this.#grace.held.size,
          graceMs: this.#grace.graceMs,
        },
      );
    return d.diff;
  }

  #synced(): void {
    this.synced = true;
    this.#firstSynced();
  }

  /** The datapath lost its state (device recreated, maps rebuilt): program everything again. */
  reprogramAll(): Promise<void> {
    this.programmed.clear();
    this.#fullApplyDue = true;
    return this.reconcile();
  }

  stop(): void {
    this.#sleep.stop();
    this.#watch?.stop();
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#firstSynced();
  }
}
