/**
 * An in-memory Registry for unit tests (no root, no files): flannel's semantics as the
 * sqlite and etcd registries have them — atomic create, renew of an existing key, TTLs
 * on a clock the test moves, a revision per write, and a watch that replays from a
 * revision, delivers each tick's writes as one batch (as a real watch does) and resyncs
 * when asked to (as after compaction). Outages and slow lists are injected by the test.
 */
import {
  type Registry,
  RegistryError,
  type RegistryRecord,
  type WatchCallbacks,
  type WatchEvent,
  type WatchHandle,
} from "../../src/registry/registry.ts";

interface Watcher {
  readonly cb: WatchCallbacks;
  /** Events not yet delivered (flushed in one batch per tick). */
  pending: WatchEvent[];
  stopped: boolean;
}

export class MemoryRegistry implements Registry {
  readonly description = "memory:test";
  config: string | null = null;
  readonly records = new Map<string, RegistryRecord>();
  revision = 0;
  /** Added to the wall clock; tests move time forward with `advance`. */
  #offset = 0;
  /** While set, every call fails with it (an outage); watchers get onError once. */
  #failing: Error | null = null;
  /** Calls in order, by operation name ("list", "watch", "create", …). */
  readonly calls: string[] = [];
  /** When set, list() waits for this promise before answering (a slow first list). */
  listGate: Promise<void> | null = null;
  readonly #log: WatchEvent[] = [];
  readonly #watchers = new Set<Watcher>();

  #op(name: string): void {
    this.calls.push(name);
    if (this.#failing) throw this.#failing;
  }

  /** Starts (error) or ends (null) an outage. */
  fail(err: Error | null): void {
    const was = this.#failing;
    this.#failing = err;
    for (const w of this.#watchers) {
      if (err && !was) w.cb.onError?.(err);
      if (!err && was) w.cb.onRecovered?.();
    }
  }

  /** The registry's clock: the wall clock plus what `advance` added (expiries compare with Date.now). */
  get now(): number {
    return Date.now() + this.#offset;
  }

  /** Moves the clock forward; leases that expire are deleted, with delete events (as etcd does). */
  advance(ms: number): void {
    this.#offset += ms;
    this.#sweep();
  }

  #sweep(): void {
    for (const r of [...this.records.values()])
      if (r.expiresAt !== null && r.expiresAt <= this.now) this.#remove(r.key);
  }

  #emit(e: WatchEvent): void {
    this.#log.push(e);
    for (const w of this.#watchers) this.#queue(w, [e]);
  }

  #queue(w: Watcher, events: WatchEvent[]): void {
    if (w.stopped) return;
    const first = w.pending.length === 0;
    w.pending.push(...events);
    if (first)
      queueMicrotask(() => {
        const batch = w.pending.splice(0);
        if (!w.stopped && batch.length > 0) w.cb.onEvents(batch);
      });
  }

  #write(key: string, value: string, ttlMs: number | null): RegistryRecord {
    const rec = {
      key,
      value,
      expiresAt: ttlMs === null ? null : this.now + ttlMs,
      revision: ++this.revision,
    };
    this.records.set(key, rec);
    this.#emit({ type: "put", record: rec });
    return rec;
  }

  #remove(key: string): boolean {
    if (!this.records.delete(key)) return false;
    this.#emit({ type: "delete", key, revision: ++this.revision });
    return true;
  }

  async getConfig(): Promise<string | null> {
    this.#op("getConfig");
    return this.config;
  }

  async setConfig(json: string): Promise<void> {
    this.#op("setConfig");
    this.config = json;
  }

  async list(): Promise<{ records: RegistryRecord[]; revision: number }> {
    this.#op("list");
    if (this.listGate) await this.listGate;
    this.#sweep();
    return { records: [...this.records.values()], revision: this.revision };
  }

  async create(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    this.#op("create");
    this.#sweep();
    return this.records.has(key) ? null : this.#write(key, value, ttlMs);
  }

  async renew(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    this.#op("renew");
    this.#sweep();
    return this.records.has(key) ? this.#write(key, value, ttlMs) : null;
  }

  async delete(key: string): Promise<boolean> {
    this.#op("delete");
    return this.#remove(key);
  }

  /** A record written by someone else (a flannel node, an operator), bypassing create's check. */
  put(key: string, value: string, ttlMs: number | null = null): RegistryRecord {
    return this.#write(key, value, ttlMs);
  }

  /** Every watcher gets the whole set once, as after a compaction it could not replay. */
  resync(): void {
    const e: WatchEvent = { type: "resync", records: [...this.records.values()], revision: this.revision };
    for (const w of this.#watchers) this.#queue(w, [e]);
  }

  watch(fromRevision: number, cb: WatchCallbacks): WatchHandle {
    this.#op("watch");
    const w: Watcher = { cb, pending: [], stopped: false };
    this.#watchers.add(w);
    // replay what happened after fromRevision, as etcd does
    const missed = this.#log.filter(
      (e) => (e.type === "put" ? e.record.revision : e.revision) > fromRevision,
    );
    if (missed.length > 0) this.#queue(w, missed);
    return {
      stop: () => {
        w.stopped = true;
        this.#watchers.delete(w);
      },
    };
  }

  /** How many watches are open. */
  get watchers(): number {
    return this.#watchers.size;
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) w.stopped = true;
    this.#watchers.clear();
  }
}

/** A registry error as the real ones word it (the agent treats it as transient). */
export function outage(what = "connection refused"): RegistryError {
  return new RegistryError(`memory:test: ${what}`);
}
