/**
 * The embedded registry: one SQLite file (bun:sqlite, WAL) shared by every agent on a
 * host. Leases carry an expiry; every write appends to an event log whose row id is the
 * revision, so a watch is "poll the log after my revision". Atomic create is an INSERT
 * inside an IMMEDIATE transaction: two agents can never hold the same subnet.
 */
import { Database, type Statement } from "bun:sqlite";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";
import {
  type Registry,
  RegistryError,
  type RegistryRecord,
  type WatchCallbacks,
  type WatchEvent,
  type WatchHandle,
} from "./registry.ts";

const SCHEMA_VERSION = "1";
/** Events kept for watchers that fall behind; older ones force a resync. */
const EVENTS_KEPT = 20_000;
const POLL_MS = 100;

interface LeaseRow {
  key: string;
  value: string;
  expires_at: number | null;
  revision: number;
}

interface EventRow {
  rev: number;
  type: "put" | "delete";
  key: string;
  value: string | null;
  expires_at: number | null;
}

export interface SqliteRegistryOptions {
  readonly path: string;
  readonly log: Logger;
  /** Clock, injectable for tests. */
  readonly now?: () => number;
  readonly pollMs?: number;
  /**
   * Create the file (and its directory) when absent: true for writers (the agent, `config
   * set`); false for readers, which must never leave an empty registry behind a typo.
   */
  readonly create?: boolean;
}

/** A reader asked for a registry file that is not there. */
export class RegistryMissingError extends RegistryError {
  override name = "RegistryMissingError";
}

function wrap(path: string, op: string, e: unknown): RegistryError {
  const msg = (e as Error)?.message ?? String(e);
  if (/not a database|malformed|file is encrypted/i.test(msg))
    return new RegistryError(
      `sqlite registry ${path} is corrupt or not a registry (${msg}); move it aside and start again, or point --registry elsewhere`,
      { cause: e },
    );
  return new RegistryError(`sqlite registry ${path}: ${op}: ${msg}`, { cause: e });
}

export class SqliteRegistry implements Registry {
  readonly description: string;
  readonly #db: Database;
  readonly #path: string;
  readonly #now: () => number;
  readonly #pollMs: number;
  readonly #log: Logger;
  #closed = false;
  readonly #q: {
    list: Statement<LeaseRow, [number]>;
    get: Statement<LeaseRow, [string]>;
    maxRev: Statement<{ rev: number | null }, []>;
    minRev: Statement<{ rev: number | null }, []>;
    events: Statement<EventRow, [number]>;
    expired: Statement<LeaseRow, [number]>;
    hasExpired: Statement<{ one: number }, [number]>;
  };

  private constructor(opts: SqliteRegistryOptions, db: Database) {
    this.#path = opts.path;
    this.description = `sqlite:${opts.path}`;
    this.#db = db;
    this.#now = opts.now ?? Date.now;
    this.#pollMs = opts.pollMs ?? POLL_MS;
    this.#log = opts.log;
    this.#q = {
      list: db.query(
        "SELECT key, value, expires_at, revision FROM leases WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY key",
      ),
      get: db.query("SELECT key, value, expires_at, revision FROM leases WHERE key = ?1"),
      maxRev: db.query("SELECT max(rev) AS rev FROM events"),
      minRev: db.query("SELECT min(rev) AS rev FROM events"),
      events: db.query(
        "SELECT rev, type, key, value, expires_at FROM events WHERE rev > ?1 ORDER BY rev LIMIT 5000",
      ),
      expired: db.query(
        "SELECT key, value, expires_at, revision FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ?1",
      ),
      hasExpired: db.query(
        "SELECT 1 AS one FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1",
      ),
    };
  }

  /** Opens (creating when absent, unless `create` is false) the registry file. A file that is not ours is refused, untouched. */
  static open(opts: SqliteRegistryOptions): SqliteRegistry {
    const { path } = opts;
    const create = opts.create ?? true;
    if (existsSync(path) && statSync(path).isDirectory())
      throw new RegistryError(
        `sqlite registry ${path} is a directory; --registry=sqlite:PATH needs a file path`,
      );
    if (!create && !existsSync(path))
      throw new RegistryMissingError(
        `sqlite registry ${path} does not exist; create it with \`tartan config set FILE --registry=sqlite:${path}\` (or start an agent on it), or name the right file with --registry`,
      );
    let db: Database;
    try {
      if (create) mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { create, readwrite: true, strict: true });
    } catch (e) {
      throw wrap(path, "open", e);
    }
    try {
      db.exec("PRAGMA busy_timeout = 10000");
      // Check before writing anything: a foreign or corrupt file must stay as it was.
      const tables = db
        .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .all()
        .map((r) => r.name);
      const ours = tables.includes("tartan_meta");
      if (!ours && tables.length > 0)
        throw new RegistryError(
          `sqlite registry ${path} is an SQLite file of something else (tables: ${tables.join(", ")}); refusing to touch it`,
        );
      if (!ours && !create)
        throw new RegistryMissingError(
          `sqlite registry ${path} is an empty file, not a registry; create one with \`tartan config set FILE --registry=sqlite:${path}\``,
        );
      if (ours) {
        const ver = db.query<{ v: string }, []>("SELECT v FROM tartan_meta WHERE k = 'schema'").get();
        if (ver?.v !== SCHEMA_VERSION)
          throw new RegistryError(
            `sqlite registry ${path} has schema ${ver?.v ?? "none"}; this tartan reads schema ${SCHEMA_VERSION}`,
          );
      }
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      // 256 KiB of page cache, not sqlite's default 2 MiB: a registry of 10,000 leases is
      // 2-3 MB and an agent reads the tail of the event log; the default cache stayed
      // resident in every agent (bench/CONTROL-PLANE.md)
      db.exec("PRAGMA cache_size = -256");
      if (!ours) {
        db.transaction(() => {
          db.exec("CREATE TABLE IF NOT EXISTS tartan_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
          db.exec(
            "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER, revision INTEGER NOT NULL)",
          );
          db.exec(
            "CREATE TABLE IF NOT EXISTS events (rev INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, key TEXT NOT NULL, value TEXT, expires_at INTEGER)",
          );
          db.exec(`INSERT OR IGNORE INTO tartan_meta (k, v) VALUES ('schema', '${SCHEMA_VERSION}')`);
        }).immediate();
      }
    } catch (e) {
      db.close();
      if (e instanceof RegistryError) throw e;
      throw wrap(path, "open", e);
    }
    return new SqliteRegistry(opts, db);
  }

  #run<T>(op: string, fn: () => T): T {
    if (this.#closed) throw new RegistryError(`sqlite registry ${this.#path}: ${op} after close`);
    try {
      return fn();
    } catch (e) {
      if (e instanceof RegistryError) throw e;
      throw wrap(this.#path, op, e);
    }
  }

  #append(type: "put" | "delete", key: string, value: string | null, expiresAt: number | null): number {
    this.#db.run("INSERT INTO events (type, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)", [
      type,
      key,
      value,
      expiresAt,
    ]);
    const rev = Number(this.#db.query<{ r: number }, []>("SELECT last_insert_rowid() AS r").get()!.r);
    if (rev % 1000 === 0) this.#db.run("DELETE FROM events WHERE rev <= ?1", [rev - EVENTS_KEPT]);
    return rev;
  }

  /** Deletes expired leases (with their delete events). Cheap when nothing expired. */
  #sweep(): void {
    const now = this.#now();
    if (!this.#q.hasExpired.get(now)) return;
    this.#db
      .transaction(() => {
        for (const row of this.#q.expired.all(now)) {
          this.#db.run("DELETE FROM leases WHERE key = ?1", [row.key]);
          this.#append("delete", row.key, null, null);
          this.#log.info("lease expired", { subnet: row.key });
        }
      })
      .immediate();
  }

  async getConfig(): Promise<string | null> {
    return this.#run(
      "get config",
      () =>
        this.#db.query<{ v: string }, []>("SELECT v FROM tartan_meta WHERE k = 'config'").get()?.v ?? null,
    );
  }

  async setConfig(json: string): Promise<void> {
    this.#run("set config", () =>
      this.#db.run("INSERT OR REPLACE INTO tartan_meta (k, v) VALUES ('config', ?1)", [json]),
    );
  }

  async list(): Promise<{ records: RegistryRecord[]; revision: number }> {
    return this.#run("list", () => {
      this.#sweep();
      return this.#db
        .transaction(() => ({
          records: this.#q.list.all(this.#now()).map(toRecord),
          revision: this.#q.maxRev.get()?.rev ?? 0,
        }))
        .deferred();
    });
  }

  /** Inserts a lease that does not exist yet (inside a write transaction); null when it exists. */
  #insert(key: string, value: string, ttlMs: number | null): RegistryRecord | null {
    if (this.#q.get.get(key)) return null;
    const expiresAt = ttlMs === null ? null : this.#now() + ttlMs;
    const revision = this.#append("put", key, value, expiresAt);
    this.#db.run("INSERT INTO leases (key, value, expires_at, revision) VALUES (?1, ?2, ?3, ?4)", [
      key,
      value,
      expiresAt,
      revision,
    ]);
    return { key, value, expiresAt, revision };
  }

  async create(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#run("create", () => {
      this.#sweep();
      return this.#db.transaction(() => this.#insert(key, value, ttlMs)).immediate();
    });
  }

  /**
   * Creates many records in one transaction (seeding benchmarks and tests); keys that
   * exist are skipped. Returns how many were created. Not part of the Registry interface.
   */
  createMany(entries: readonly { key: string; value: string; ttlMs: number | null }[]): number {
    return this.#run("create many", () =>
      this.#db
        .transaction(() => entries.filter((e) => this.#insert(e.key, e.value, e.ttlMs) !== null).length)
        .immediate(),
    );
  }

  async renew(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#run("renew", () => {
      this.#sweep();
      return this.#db
        .transaction((): RegistryRecord | null => {
          if (!this.#q.get.get(key)) return null;
          const expiresAt = ttlMs === null ? null : this.#now() + ttlMs;
          const revision = this.#append("put", key, value, expiresAt);
          this.#db.run("UPDATE leases SET value = ?2, expires_at = ?3, revision = ?4 WHERE key = ?1", [
            key,
            value,
            expiresAt,
            revision,
          ]);
          return { key, value, expiresAt, revision };
        })
        .immediate();
    });
  }

  async delete(key: string): Promise<boolean> {
    return this.#run("delete", () =>
      this.#db
        .transaction(() => {
          if (!this.#q.get.get(key)) return false;
          this.#db.run("DELETE FROM leases WHERE key = ?1", [key]);
          this.#append("delete", key, null, null);
          return true;
        })
        .immediate(),
    );
  }

  /** Polls the event log; a watcher that fell behind the kept log gets one resync. */
  watch(fromRevision: number, cb: WatchCallbacks): WatchHandle {
    let rev = fromRevision;
    let failing = false;
    let stopped = false;
    const poll = () => {
      if (stopped || this.#closed) return;
      try {
        this.#sweep();
        const out: WatchEvent[] = [];
        const minRev = this.#q.minRev.get()?.rev ?? null;
        if (minRev !== null && rev < minRev - 1) {
          const { records, revision } = this.#db
            .transaction(() => ({
              records: this.#q.list.all(this.#now()).map(toRecord),
              revision: this.#q.maxRev.get()?.rev ?? 0,
            }))
            .deferred();
          out.push({ type: "resync", records, revision });
          rev = revision;
        }
        for (;;) {
          const rows = this.#q.events.all(rev);
          for (const r of rows) {
            out.push(
              r.type === "put"
                ? {
                    type: "put",
                    record: { key: r.key, value: r.value ?? "", expiresAt: r.expires_at, revision: r.rev },
                  }
                : { type: "delete", key: r.key, revision: r.rev },
            );
            rev = r.rev;
          }
          if (rows.length < 5000) break;
        }
        if (failing) {
          failing = false;
          cb.onRecovered?.();
        }
        if (out.length > 0) cb.onEvents(out);
      } catch (e) {
        if (!failing) {
          failing = true;
          cb.onError?.(wrap(this.#path, "watch", e));
        }
      }
    };
    const timer = setInterval(poll, this.#pollMs);
    queueMicrotask(poll);
    return {
      stop: () => {
        stopped = true;
        clearInterval(timer);
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

function toRecord(r: LeaseRow): RegistryRecord {
  return { key: r.key, value: r.value, expiresAt: r.expires_at, revision: r.revision };
}
