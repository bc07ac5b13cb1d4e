/**
 * The Registry interface: where the network config and the leases live. Two engines
 * implement it: `sqlite.ts` (embedded, one host) and `etcd.ts` (clusters). Both use
 * flannel's layout: a config document and one record per subnet, keyed "10.244.3.0-24",
 * whose value is flannel's lease JSON. Records travel raw; `lease/lease.ts` (`decodeLeaseRecord`) validates them, and
 * the agent reaches a registry only through the lease source seam (`lease/source.ts`).
 */

/** One lease record as stored. */
export interface RegistryRecord {
  /** flannel's subnet key, e.g. "10.244.3.0-24" (no prefix). */
  readonly key: string;
  /** The lease JSON exactly as stored. */
  readonly value: string;
  /** Expiry in ms since the epoch; null = a reservation that never expires. */
  readonly expiresAt: number | null;
  /** Registry revision at which this record was last written. */
  readonly revision: number;
}

export type WatchEvent =
  | { readonly type: "put"; readonly record: RegistryRecord }
  | { readonly type: "delete"; readonly key: string; readonly revision: number }
  /** The registry could not replay every event (compaction, restart): here is the full set. */
  | { readonly type: "resync"; readonly records: readonly RegistryRecord[]; readonly revision: number };

export interface WatchHandle {
  stop(): void;
}

export interface WatchCallbacks {
  onEvents(events: readonly WatchEvent[]): void;
  /** The watch lost its connection; it keeps retrying by itself. */
  onError?(err: Error): void;
  /** The watch is connected again (after an error). */
  onRecovered?(): void;
}

export interface Registry {
  /** e.g. "sqlite:/var/lib/tartan/registry.db" or "etcd:https://a:2379,https://b:2379" — no secrets. */
  readonly description: string;
  /** The network config JSON, or null when none was set. */
  getConfig(): Promise<string | null>;
  /** Stores the network config JSON (callers validate it first). */
  setConfig(json: string): Promise<void>;
  /** Every live lease record and the revision the list is consistent at. */
  list(): Promise<{ records: RegistryRecord[]; revision: number }>;
  /** Atomically creates `key` only if it does not exist; null when it already exists (a lost race). */
  create(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null>;
  /** Rewrites an existing record with a fresh TTL; null when the key no longer exists. */
  renew(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null>;
  /** Deletes a record; false when it did not exist. */
  delete(key: string): Promise<boolean>;
  /** Delivers every change after `fromRevision`, in order, until stopped. */
  watch(fromRevision: number, cb: WatchCallbacks): WatchHandle;
  close(): Promise<void>;
}

/** A registry operation failed (unreachable, corrupt, refused). */
export class RegistryError extends Error {
  override name = "RegistryError";
}
