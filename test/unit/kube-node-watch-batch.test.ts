/**
 * How the Node watch reads one network read of watch events (readNodeWatchBatch),
 * without an API server: bookmarks, resourceVersions, a 410 ERROR, other ERRORs.
 */
import { describe, expect, test } from "bun:test";
import { KubeApiError, type RawWatchEvent } from "../../src/kube/client.ts";
import { readNodeWatchBatch } from "../../src/kube/node-watch.ts";

const node = (type: "ADDED" | "MODIFIED" | "DELETED", name: string, rv: string): RawWatchEvent => ({
  type,
  object: { metadata: { name, resourceVersion: rv } },
});
const bookmark = (rv: string): RawWatchEvent => ({
  type: "BOOKMARK",
  object: { metadata: { resourceVersion: rv } },
});
const error = (object: unknown): RawWatchEvent => ({ type: "ERROR", object });

describe("readNodeWatchBatch", () => {
  test("events pass in order and the last resourceVersion is kept; bookmarks only move it", () => {
    const r = readNodeWatchBatch(
      [node("ADDED", "a", "11"), bookmark("12"), node("MODIFIED", "b", "13")],
      "10",
    );
    expect(r.events.map((e) => e.object.metadata.name)).toEqual(["a", "b"]);
    expect(r.resourceVersion).toBe("13");
    expect(r.end).toBeNull();
    const only = readNodeWatchBatch([bookmark("20")], "13");
    expect(only.events).toEqual([]);
    expect(only.resourceVersion).toBe("20");
  });

  test("an event without a resourceVersion (or an empty one) leaves it where it was", () => {
    const r = readNodeWatchBatch(
      [
        node("ADDED", "a", "11"),
        { type: "DELETED", object: { metadata: { name: "b" } } },
        node("ADDED", "c", ""),
      ],
      "10",
    );
    expect(r.events).toHaveLength(3);
    expect(r.resourceVersion).toBe("11");
  });

  test("a 410 ERROR event means gone: the events before it are kept, nothing after it is read", () => {
    const r = readNodeWatchBatch(
      [node("ADDED", "a", "11"), error({ code: 410, reason: "Expired" }), node("ADDED", "b", "12")],
      "10",
    );
    expect(r.end).toBe("gone");
    expect(r.events.map((e) => e.object.metadata.name)).toEqual(["a"]);
    expect(r.resourceVersion).toBe("11");
  });

  test("another ERROR event is an API error naming its reason and message", () => {
    const r = readNodeWatchBatch(
      [error({ code: 500, reason: "InternalError", message: "etcd is down" })],
      "10",
    );
    expect(r.end).toBeInstanceOf(KubeApiError);
    const e = r.end as KubeApiError;
    expect(e.message).toBe("watch of /api/v1/nodes: InternalError: etcd is down");
    expect(e.status).toBe(500);
    expect(e.reason).toBe("InternalError");
  });

  test("an ERROR event without code, reason or message still says what it carried", () => {
    const r = readNodeWatchBatch([error({ kind: "Status" })], "10");
    const e = r.end as KubeApiError;
    expect(e.message).toBe('watch of /api/v1/nodes: error: {"kind":"Status"}');
    expect(e.status).toBe(0);
    expect(e.reason).toBe("");
  });
});
