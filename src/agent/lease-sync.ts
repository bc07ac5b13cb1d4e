/**
 * Follows every lease of the source (list, then watch from that revision), validates
 * each record once, and keeps the backend programmed with what the source says.
 *
 * Constant work per change: a watch event updates the lease set and marks its key
 * dirty; a reconcile diffs only the dirty keys. Events of a burst coalesce: the first one
 * arms a short timer (`coalesceMs`) and everything that arrives before it fires (or
 * while an apply runs) goes into the next apply. The first list and a resync are one
 * full comparison and one apply. Long work — decoding a large list, diffing every key —
 * runs in slices that yield to the event loop, so the HTTP endpoint keeps answering.
 *
 * Guarantees kept from the start: nothing is applied before the first full list; bad
 * records are skipped, counted and logged once; a failed apply is retried with every key
 * that became dirty meanwhile; our own lease deleted (or taken by another PublicIP) is
 * reported so the keeper acquires again; `reprogramAll` after the datapath was rebuilt.
 *
 * A remote lease that vanishes stays programmed for a short grace (removal-grace.ts), so
 * a node re-acquiring its deleted lease never loses its peers' routes: the keys in their
 * grace are diffed again at every apply (they are few) until they come back or their
 * grace ends.
 */
import type { Backend } from "../backend/backend.ts";
import type { NetworkConfig } from "../config/network.ts";
import { type DecodeResult, decodeLeaseRecord, type Lease } from "../lease/lease.ts";
import {
  type DiffBuilder,
  diffKey,
  diffSize,
  diffSubnets,
  isEmptyDiff,
  type LeaseDiff,
  newDiff,
} from "../lease/reconcile.ts";
import { REMOVAL_GRACE_MS, RemovalGrace } from "../lease/removal-grace.ts";
import type { LeaseEvent, LeaseRecord, LeaseSource, WatchHandle } from "../lease/source.ts";
import { errorText, type Logger } from "../log.ts";
import { SLICE, yieldToLoop } from "../slices.ts";
import type { AgentMetrics } from "../status/status.ts";
import { collectSoon, LARGE_BATCH } from "./collect.ts";
import type { SourceHealth } from "./source-health.ts";
import { StoppableSleep } from "./stoppable-sleep.ts";

/** Changes listed by subnet in the "programmed leases" line up to this many. */
const LOGGED_SUBNETS = 8;

/** Default coalescing window: a burst's events within it become one apply. */
export const COALESCE_MS = 20;

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
  /** How long the first event of a burst waits for the rest (default COALESCE_MS). */
  readonly coalesceMs?: number;
  /** How long a vanished remote lease stays programmed (default REMOVAL_GRACE_MS). */
  readonly removalGraceMs?: number;
}

export class LeaseSync {
  #leases = new Map<string, Lease>();
  /** Remote leases as the backend holds them (the same objects as in `leases` when in step). */
  readonly programmed = new Map<string, Lease>();
  revision = 0;
  /** true once the first full list has been applied and nothing is pending. */
  synced = false;
  #watch: WatchHandle | null = null;
  /** Event batches, handled one after the other in arrival order. */
  #events: Promise<void> = Promise.resolve();
  /** Reconciles, one at a time. */
  #running: Promise<void> = Promise.resolve();
  /** A reconcile is queued behind the running one (later requests join it). */
  #queued: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #retry: ReturnType<typeof setTimeout> | null = null;
  /** Keys changed since the last apply. */
  #dirty = new Set<string>();
  /** The next reconcile compares every key (first list, resync, reprogramAll). */
  #full = true;
  /** The own key the last apply was computed for: when it changes, both keys are dirty. */
  #appliedOwnKey: string | null = null;
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
  /** Records skipped as invalid, by key: what was seen (to log it once) and why it was skipped. */
  readonly #badSeen = new Map<string, { readonly seen: string; readonly reason: string }>();
  readonly #o: LeaseSyncOptions;

  constructor(o: LeaseSyncOptions) {
    this.#o = o;
    this.#grace = new RemovalGrace(o.removalGraceMs ?? REMOVAL_GRACE_MS);
  }

  /** Every valid lease (ours included), by subnet key. Replaced whole by a resync. */
  get leases(): ReadonlyMap<string, Lease> {
    return this.#leases;
  }

  /** Remote leases programmed and still wanted as programmed: counted over the few keys not in step. */
  get programmedCount(): number {
    let n = this.programmed.size;
    const own = this.#ownKey();
    if (own !== null && this.programmed.has(own)) n--;
    const gone = (k: string) => k !== own && this.programmed.has(k) && !this.#leases.has(k);
    for (const k of this.#dirty) if (gone(k)) n--;
    // leases in their removal grace: still programmed, no longer wanted
    for (const k of this.#grace.held.keys()) if (!this.#dirty.has(k) && gone(k)) n--;
    return n;
  }

  /** The records skipped as invalid (still in the source) and why. */
  invalidRecords(): { key: string; reason: string }[] {
    return [...this.#badSeen].map(([key, b]) => ({ key, reason: b.reason }));
  }

  /**
   * Lists (retrying while the source fails), starts the watch, and resolves once that
   * list is programmed (or on stop). Apply failures are retried meanwhile.
   */
  async start(): Promise<void> {
    const first = await this.#listUntilOk();
    if (!first) return;
    this.#leases = await this.#decodeAll(first.records);
    this.revision = first.revision;
    this.#loaded = true;
    this.#follow(first.revision);
    await this.reconcile();
    await this.#firstSync;
  }

  /**
   * Starts the watch. Its callbacks are made here, not in `start`: closures there would
   * keep the first list's records (every key and JSON value) alive as long as the watch.
   */
  #follow(revision: number): void {
    this.#watch = this.#o.source.watch(revision, {
      onEvents: (events) => {
        this.#events = this.#events.then(() => this.#onEvents(events));
      },
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

  /**
   * Puts the record's lease into `into` (or takes the key out when the record is bad);
   * returns the key the lease is held under (the canonical form of the record's key).
   */
  #accept(rec: LeaseRecord, into: Map<string, Lease>): string {
    const d = this.#decode(rec);
    if (d.ok) {
      this.#badSeen.delete(rec.key);
      into.set(d.lease.key, d.lease);
      return d.lease.key;
    }
    into.delete(rec.key);
    const seen = `${rec.invalid ?? ""}\0${rec.value}`;
    if (this.#badSeen.get(rec.key)?.seen !== seen) {
      this.#badSeen.set(rec.key, { seen, reason: d.reason });
      this.#o.metrics.invalidRecords++;
      this.#o.log.warn("skipping invalid registry record", { key: rec.key, reason: d.reason });
    }
    return rec.key;
  }

  /** A whole list decoded into a new set, a slice at a time. */
  async #decodeAll(records: readonly LeaseRecord[]): Promise<Map<string, Lease>> {
    const out = new Map<string, Lease>();
    for (let i = 0; i < records.length; i++) {
      this.#accept(records[i]!, out);
      if (i % SLICE === SLICE - 1) await yieldToLoop();
    }
    return out;
  }

  async #onEvents(events: readonly LeaseEvent[]): Promise<void> {
    for (const e of events) {
      if (this.#sleep.stopped) return;
      if (e.type === "resync") {
        // decoded aside and swapped in whole: a reconcile never sees half a set
        const next = await this.#decodeAll(e.records);
        if (this.#badSeen.size > 0) {
          const present = new Set(e.records.map((r) => r.key));
          for (const k of this.#badSeen.keys()) if (!present.has(k)) this.#badSeen.delete(k);
        }
        this.#leases = next;
        this.#full = true;
        this.revision = e.revision;
        this.#o.log.info("registry resync", { leases: next.size, revision: e.revision });
      } else if (e.type === "put") {
        this.#dirty.add(e.record.key);
        this.#dirty.add(this.#accept(e.record, this.#leases));
        this.revision = e.record.revision;
      } else {
        this.#leases.delete(e.key);
        this.#badSeen.delete(e.key);
        this.#dirty.add(e.key);
        this.revision = e.revision;
      }
    }
    this.#o.health.ok();
    const own = this.#o.ownLease();
    const now = own ? this.#leases.get(own.key) : undefined;
    // gone, or rewritten by a node with another PublicIP (ours expired and was taken)
    const ownGone = own !== null && (!now || now.attrs.publicIp !== own.attrs.publicIp);
    this.#soon();
    if (ownGone) this.#o.onOwnLeaseGone();
  }

  /** Arms the coalescing timer: what changes before it fires is applied together. */
  #soon(): void {
    if (this.#timer || this.#sleep.stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.reconcile();
    }, this.#o.coalesceMs ?? COALESCE_MS);
  }

  /**
   * Programs what changed; serialized (one apply at a time; requests made while one runs
   * join the next). Failures retry after `retryMs` with everything still dirty.
   */
  reconcile(): Promise<void> {
    if (this.#queued) return this.#queued;
    const next = this.#running.then(() => {
      this.#queued = null;
      return this.#reconcileOnce();
    });
    this.#queued = next;
    this.#running = next;
    return next;
  }

  async #reconcileOnce(): Promise<void> {
    if (this.#sleep.stopped || !this.#loaded) return;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const ownKey = this.#ownKey();
    const full = this.#full;
    const keys = this.#dirty;
    this.#full = false;
    this.#dirty = new Set();
    if (ownKey !== this.#appliedOwnKey) {
      // our subnet changed: the old one may be a remote now, the new one is not
      if (this.#appliedOwnKey !== null) keys.add(this.#appliedOwnKey);
      if (ownKey !== null) keys.add(ownKey);
    }
    // the leases in their grace are compared again: came back, or their grace is over
    for (const k of this.#grace.held.keys()) keys.add(k);
    const diff = this.#deferRemovals(
      full ? await this.#diffAll(ownKey) : this.#diffDirty(keys, ownKey),
      ownKey,
    );
    if (isEmptyDiff(diff) && !this.#fullApplyDue) {
      this.#appliedOwnKey = ownKey;
      this.#markSynced();
      return;
    }
    const t0 = performance.now();
    try {
      await this.#o.backend.apply(diff);
    } catch (e) {
      // everything of this attempt is dirty again, with what changed meanwhile
      if (full) this.#full = true;
      for (const k of keys) this.#dirty.add(k);
      this.synced = false;
      this.#o.metrics.applyErrors++;
      const retryMs = this.#o.retryMs ?? 1000;
      this.#o.log.error("programming the datapath failed; retrying", {
        error: errorText(e),
        retryInMs: retryMs,
      });
      if (this.#retry) clearTimeout(this.#retry);
      this.#retry = setTimeout(() => void this.reconcile(), retryMs);
      return;
    }
    this.#fullApplyDue = false;
    this.#appliedOwnKey = ownKey;
    for (const l of diff.remove) this.programmed.delete(l.key);
    for (const l of diff.add) this.programmed.set(l.key, l);
    for (const l of diff.update) this.programmed.set(l.key, l);
    this.#o.metrics.lastApplyMs = performance.now() - t0;
    this.#markSynced();
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
    if (diffSize(diff) >= LARGE_BATCH) collectSoon();
  }

  /** Our subnet key, also while a lost lease is re-acquired. */
  #ownKey(): string | null {
    return this.#o.ownKey?.() ?? this.#o.ownLease()?.key ?? null;
  }

  /** The diff to apply now: removals of vanished remote leases wait out their grace (a timer comes back for them). */
  #deferRemovals(full: LeaseDiff, ownKey: string | null): LeaseDiff {
    const d = this.#grace.defer(full, ownKey, Date.now());
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

  #diffDirty(keys: ReadonlySet<string>, ownKey: string | null): DiffBuilder {
    const out = newDiff();
    for (const k of keys) diffKey(out, k, this.#leases.get(k), this.programmed.get(k), ownKey);
    return out;
  }

  /** Every key compared, a slice at a time; keys that change meanwhile are dirty for the next round. */
  async #diffAll(ownKey: string | null): Promise<DiffBuilder> {
    const out = newDiff();
    const desired = this.#leases;
    let i = 0;
    for (const [k, l] of desired) {
      diffKey(out, k, l, this.programmed.get(k), ownKey);
      if (++i % SLICE === 0) await yieldToLoop();
    }
    for (const [k, l] of this.programmed) {
      if (!desired.has(k)) out.remove.push(l);
      if (++i % SLICE === 0) await yieldToLoop();
    }
    return out;
  }

  #markSynced(): void {
    this.synced = true;
    this.#firstSynced();
  }

  /** The datapath lost its state (device recreated, maps rebuilt): program everything again. */
  reprogramAll(): Promise<void> {
    this.programmed.clear();
    this.#fullApplyDue = true;
    this.#full = true;
    return this.reconcile();
  }

  stop(): void {
    this.#sleep.stop();
    this.#watch?.stop();
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#firstSynced();
  }
}
