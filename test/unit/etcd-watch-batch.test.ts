/**
 * How the etcd watch reads a batch of watch responses (readWatchBatch), without etcd:
 * compaction, cancel, a store that went backwards, fragments, progress notifications.
 */
import { describe, expect, test } from "bun:test";
import { type GatewayEvent, readWatchBatch } from "../../src/registry/etcd-watch.ts";

const WHERE = "etcd:http://198.18.0.1:2379";
const ev = (rev: number): GatewayEvent => ({
  type: "PUT",
  kv: { key: btoa(`/coreos.com/network/subnets/k${rev}`), mod_revision: String(rev) },
});
const header = (revision: number) => ({ revision: String(revision) });

describe("readWatchBatch", () => {
  test("events of complete responses come out in order; no progress, no end", () => {
    const r = readWatchBatch([{ events: [ev(5), ev(6)] }, { events: [ev(7)] }], [], 5, WHERE);
    expect(r.events.map((e) => e.kv.mod_revision)).toEqual(["5", "6", "7"]);
    expect(r.pending).toEqual([]);
    expect(r.progress).toBe(0);
    expect(r.created).toBe(false);
    expect(r.end).toBeNull();
  });

  test("compaction ends the session with a resync; events before it still come out", () => {
    const r = readWatchBatch(
      [{ events: [ev(5)] }, { compact_revision: "40" }, { events: [ev(6)] }],
      [],
      5,
      WHERE,
    );
    expect(r.end).toEqual({ kind: "resync", why: "etcd compacted its history up to revision 40" });
    expect(r.events.map((e) => e.kv.mod_revision)).toEqual(["5"]);
  });

  test('a compact_revision of "0" is no compaction', () => {
    const r = readWatchBatch([{ compact_revision: "0", events: [ev(5)] }], [], 5, WHERE);
    expect(r.end).toBeNull();
    expect(r.events).toHaveLength(1);
  });

  test("a cancel by the server fails the session with its reason (or says none was given)", () => {
    const r = readWatchBatch([{ canceled: true, cancel_reason: "permission denied" }], [], 5, WHERE);
    expect(r.end?.kind).toBe("failed");
    expect(r.end?.kind === "failed" && r.end.err.message).toBe(
      `etcd watch at ${WHERE}: canceled by the server: permission denied`,
    );
    const none = readWatchBatch([{ canceled: true }], [], 5, WHERE);
    expect(none.end?.kind === "failed" && none.end.err.message).toEndWith("no reason given");
  });

  test("created at or past the revisions seen: the watch works (recovered), nothing ends", () => {
    const r = readWatchBatch([{ created: true, header: header(9) }], [], 10, WHERE);
    expect(r.created).toBe(true);
    expect(r.end).toBeNull();
    expect(r.progress).toBe(0);
  });

  test("created behind the revisions already seen (store restored or recreated): resync", () => {
    const r = readWatchBatch([{ created: true, header: header(3) }, { events: [ev(4)] }], [], 10, WHERE);
    expect(r.created).toBe(false);
    expect(r.end).toEqual({ kind: "resync", why: "etcd is at revision 3, behind the 9 already seen" });
    expect(r.events).toEqual([]);
  });

  test("fragments are held until the last one, across batches", () => {
    const first = readWatchBatch([{ fragment: true, events: [ev(5), ev(6)] }], [], 5, WHERE);
    expect(first.events).toEqual([]);
    expect(first.pending.map((e) => e.kv.mod_revision)).toEqual(["5", "6"]);
    expect(first.progress).toBe(0);
    const second = readWatchBatch([{ events: [ev(7)], header: header(7) }], first.pending, 5, WHERE);
    expect(second.events.map((e) => e.kv.mod_revision)).toEqual(["5", "6", "7"]);
    expect(second.pending).toEqual([]);
    // the last fragment carries events: it is no progress notification
    expect(second.progress).toBe(0);
  });

  test("the caller's pending list is not changed", () => {
    const pending = [ev(5)];
    readWatchBatch([{ events: [ev(6)] }], pending, 5, WHERE);
    expect(pending).toHaveLength(1);
  });

  test("an empty response is a progress notification: the highest header revision counts", () => {
    const r = readWatchBatch([{ header: header(20) }, { header: header(12) }], [], 5, WHERE);
    expect(r.progress).toBe(20);
    expect(r.events).toEqual([]);
    expect(r.end).toBeNull();
  });

  test("a response with events is no progress notification, whatever its header says", () => {
    const r = readWatchBatch([{ events: [ev(6)], header: header(50) }], [], 5, WHERE);
    expect(r.progress).toBe(0);
  });
});
