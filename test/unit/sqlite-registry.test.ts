import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import type { WatchEvent } from "../../src/registry/registry.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";

const dirs: string[] = [];
const regs: SqliteRegistry[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "tartan-sqlite-"));
  dirs.push(d);
  return d;
}
function open(path: string, now?: () => number): SqliteRegistry {
  const r = SqliteRegistry.open({ path, log: silentLogger, now, pollMs: 10 });
  regs.push(r);
  return r;
}
afterEach(async () => {
  for (const r of regs.splice(0)) await r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function until<T>(fn: () => T | undefined, what: string, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

describe("sqlite registry", () => {
  test("config round trip and lease CRUD with revisions", async () => {
    const r = open(join(tmp(), "r.db"));
    expect(await r.getConfig()).toBeNull();
    await r.setConfig('{"Network":"198.19.0.0/16"}');
    expect(await r.getConfig()).toBe('{"Network":"198.19.0.0/16"}');
    const a = await r.create("198.19.1.0-24", "{}", 60_000);
    expect(a?.revision).toBe(1);
    expect(await r.create("198.19.1.0-24", '{"x":1}', 60_000)).toBeNull();
    const b = await r.renew("198.19.1.0-24", '{"y":2}', null);
    expect(b).toMatchObject({ value: '{"y":2}', expiresAt: null, revision: 2 });
    expect(await r.renew("198.19.9.0-24", "{}", 1)).toBeNull();
    const l = await r.list();
    expect(l.revision).toBe(2);
    expect(l.records.map((x) => x.key)).toEqual(["198.19.1.0-24"]);
    expect(await r.delete("198.19.1.0-24")).toBe(true);
    expect(await r.delete("198.19.1.0-24")).toBe(false);
    expect((await r.list()).records).toEqual([]);
  });

  test("two handles on one file (two agents) never both create a key", async () => {
    const p = join(tmp(), "r.db");
    const a = open(p);
    const b = open(p);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).create("198.19.7.0-24", `${i}`, 1000)),
    );
    expect(results.filter((x) => x !== null)).toHaveLength(1);
  });

  test("leases expire: list hides them and watchers see a delete", async () => {
    let now = 1_000_000;
    const p = join(tmp(), "r.db");
    const r = open(p, () => now);
    await r.create("198.19.1.0-24", "{}", 5_000);
    await r.create("198.19.2.0-24", "{}", null);
    const seen: WatchEvent[] = [];
    const w = r.watch(2, { onEvents: (e) => seen.push(...e) });
    now += 6_000;
    await until(() => (seen.length > 0 ? true : undefined), "expiry event");
    w.stop();
    expect(seen).toEqual([{ type: "delete", key: "198.19.1.0-24", revision: 3 }]);
    expect((await r.list()).records.map((x) => x.key)).toEqual(["198.19.2.0-24"]);
  });

  test("watch delivers puts and deletes in order from a revision, across handles", async () => {
    const p = join(tmp(), "r.db");
    const writer = open(p);
    const reader = open(p);
    await writer.create("198.19.1.0-24", "a", null);
    const seen: WatchEvent[] = [];
    const w = reader.watch(1, { onEvents: (e) => seen.push(...e) });
    await writer.create("198.19.2.0-24", "b", null);
    await writer.renew("198.19.2.0-24", "c", null);
    await writer.delete("198.19.1.0-24");
    await until(() => (seen.length >= 3 ? true : undefined), "3 events");
    w.stop();
    expect(
      seen.map((e) =>
        e.type === "put"
          ? `put ${e.record.key}=${e.record.value}@${e.record.revision}`
          : e.type === "delete"
            ? `del ${e.key}@${e.revision}`
            : "resync",
      ),
    ).toEqual(["put 198.19.2.0-24=b@2", "put 198.19.2.0-24=c@3", "del 198.19.1.0-24@4"]);
  });

  test("a watcher behind the kept event log gets one resync with the live set", async () => {
    const p = join(tmp(), "r.db");
    const r = open(p);
    await r.create("198.19.1.0-24", "a", null);
    await r.create("198.19.2.0-24", "b", null);
    // simulate pruning of old events
    const db = new Database(p);
    db.run("DELETE FROM events WHERE rev <= 1");
    db.close();
    await r.create("198.19.3.0-24", "c", null);
    const seen: WatchEvent[] = [];
    const w = r.watch(0, { onEvents: (e) => seen.push(...e) });
    await until(() => (seen.length > 0 ? true : undefined), "resync");
    w.stop();
    expect(seen[0]?.type).toBe("resync");
    if (seen[0]?.type === "resync")
      expect(seen[0].records.map((x) => x.key)).toEqual(["198.19.1.0-24", "198.19.2.0-24", "198.19.3.0-24"]);
  });

  test("a corrupt file is refused with a clear error and left as it was", () => {
    const p = join(tmp(), "r.db");
    const junk = "this is not a database at all, but an operator's mistake\n".repeat(200);
    writeFileSync(p, junk);
    expect(() => open(p)).toThrow(/corrupt or not a registry.*move it aside/);
    expect(readFileSync(p, "utf8")).toBe(junk);
  });

  test("another program's SQLite file is refused and untouched", () => {
    const p = join(tmp(), "other.db");
    const db = new Database(p);
    db.run("CREATE TABLE users (id INTEGER)");
    db.close();
    const before = readFileSync(p);
    expect(() => open(p)).toThrow(/SQLite file of something else \(tables: users\)/);
    expect(readFileSync(p).equals(before)).toBe(true);
  });

  test("a directory or an unwritable path is a clear error", () => {
    const d = tmp();
    expect(() => open(d)).toThrow(/is a directory/);
    mkdirSync(join(d, "ro"), { mode: 0o500 });
    writeFileSync(join(d, "file"), "");
    expect(() => open(join(d, "file", "sub.db"))).toThrow(/sqlite registry .*file\/sub\.db/);
  });
});
