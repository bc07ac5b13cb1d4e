/**
 * The resumable etcd watch behind `Registry.watch`: one watch stream (etcd-gateway.ts) on
 * the subnets prefix, its responses turned into WatchEvents in order, and the stream
 * re-opened after any failure from the revision after the last one delivered, with
 * backoff, forever, until stopped. When etcd has compacted past that revision, or the
 * store is behind it (etcd was restored from a backup or recreated: its revisions start
 * again), the watch re-lists and delivers one `resync` with the live set.
 *
 * The resume point is the mod revision of the last delivered event (or the header
 * revision of a progress notification, which etcd only sends to a watcher that is caught
 * up), never the header revision of a response, which can be past events not yet
 * delivered (a catch-up batch that etcd cut at 1000 revisions, or a stream that broke
 * during a replay): nothing is missed, and nothing is replayed twice.
 */
import { errorText, type Logger } from "../log.ts";
import type { GatewayWatch, WatchResponse } from "./etcd-gateway.ts";
import {
  RegistryError,
  type RegistryRecord,
  type WatchCallbacks,
  type WatchEvent,
  type WatchHandle,
} from "./registry.ts";

/** One event of a watch response, as the gateway writes it. */
export type GatewayEvent = NonNullable<WatchResponse["events"]>[number];

export interface EtcdWatchSource {
  /** Opens a watch stream with this create request (rejects when no endpoint can be reached). */
  open(create: Record<string, unknown>): Promise<GatewayWatch>;
  /** The watched range: the subnets prefix and its end (base64). */
  readonly key: string;
  readonly rangeEnd: string;
  /** Turns one response's events into WatchEvents (may do RPCs: lease expiries). */
  toEvents(events: readonly GatewayEvent[]): Promise<WatchEvent[]>;
  /** A full, consistent list (for a resync after compaction). */
  relist(): Promise<{ records: RegistryRecord[]; revision: number }>;
  /** "etcd:http://…" — for error messages. */
  readonly where: string;
  readonly log: Logger;
}

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
}

// capped at 1 s: after an outage the watch (and readiness) comes back within about a second
const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 1000 };

type SessionEnd = { kind: "stopped" } | { kind: "resync"; why: string } | { kind: "failed"; err: Error };

/** Starts watching; events after `fromRevision` go to `cb.onEvents` in order. */
export function startEtcdWatch(
  src: EtcdWatchSource,
  fromRevision: number,
  cb: WatchCallbacks,
  backoff: BackoffPolicy = DEFAULT_BACKOFF,
): WatchHandle {
  let next = fromRevision + 1;
  let stopped = false;
  let failing = false;
  let delay = backoff.initialMs;
  let current: GatewayWatch | null = null;
  let wake: (() => void) | null = null;
  const log = src.log.with({ registry: src.where });

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wake = null;
        resolve();
      }
      wake = done;
    });

  const deliver = (events: WatchEvent[]) => {
    if (events.length === 0 || stopped) return;
    try {
      cb.onEvents(events);
    } catch (err) {
      log.error("watch consumer threw; events were delivered once and are not retried", { err });
    }
  };

  const recovered = () => {
    delay = backoff.initialMs;
    if (!failing) return;
    failing = false;
    log.info("etcd watch recovered", { fromRevision: next });
    cb.onRecovered?.();
  };

  const failed = (err: Error) => {
    if (stopped) return;
    if (!failing) log.warn("etcd watch lost; retrying with backoff", { err, fromRevision: next });
    else log.debug("etcd watch still failing", { err, fromRevision: next });
    failing = true;
    cb.onError?.(err);
  };

  /** One stream, from `next`, until it fails, is compacted past, or the watch is stopped. */
  const session = async (): Promise<SessionEnd> => {
    let stream: GatewayWatch;
    try {
      stream = await src.open({
        key: src.key,
        range_end: src.rangeEnd,
        start_revision: next,
        progress_notify: true,
        fragment: true,
      });
    } catch (cause) {
      return {
        kind: "failed",
        err: new RegistryError(`etcd watch at ${src.where}: cannot open the stream`, { cause }),
      };
    }
    if (stopped) {
      stream.cancel();
      return { kind: "stopped" };
    }
    current = stream;

    // The stream is read as fast as it comes; responses that arrive while the previous
    // ones are being turned into events (lease expiry lookups: a round trip each) wait
    // in `inbox` and are taken together: their lookups run at once, not one after another.
    const inbox: WatchResponse[] = [];
    let readEnd: SessionEnd | null = null;
    let wakeProcessor: (() => void) | null = null;
    const signal = () => {
      wakeProcessor?.();
      wakeProcessor = null;
    };
    const reader = (async () => {
      try {
        for await (const res of stream.responses) {
          inbox.push(res);
          signal();
        }
        readEnd = { kind: "failed", err: new RegistryError(`etcd watch at ${src.where}: stream ended`) };
      } catch (cause) {
        readEnd = {
          kind: "failed",
          err: new RegistryError(`etcd watch at ${src.where}: stream failed`, { cause }),
        };
      }
      signal();
    })();

    let pending: GatewayEvent[] = [];
    /** Takes a batch of responses in order; the end of the session when one of them ends it. */
    const take = async (batch: readonly WatchResponse[]): Promise<SessionEnd | null> => {
      const evs: GatewayEvent[] = [];
      let progress = 0;
      let end: SessionEnd | null = null;
      for (const res of batch) {
        if (res.compact_revision && res.compact_revision !== "0") {
          end = { kind: "resync", why: `etcd compacted its history up to revision ${res.compact_revision}` };
          break;
        }
        if (res.canceled) {
          end = {
            kind: "failed",
            err: new RegistryError(
              `etcd watch at ${src.where}: canceled by the server: ${res.cancel_reason || "no reason given"}`,
            ),
          };
          break;
        }
        if (res.created) {
          const current = Number(res.header?.revision ?? 0);
          // we have seen revisions this store never had: it was restored or recreated
          if (current < next - 1) {
            end = {
              kind: "resync",
              why: `etcd is at revision ${current}, behind the ${next - 1} already seen`,
            };
            break;
          }
          recovered();
          continue;
        }
        for (const e of res.events ?? []) pending.push(e);
        if (res.fragment) continue;
        // an empty response is a progress notification: etcd has sent everything up to its revision
        if (pending.length === 0) progress = Math.max(progress, Number(res.header?.revision ?? 0));
        for (const e of pending) evs.push(e);
        pending = [];
      }
      if (evs.length > 0) {
        const events = await src.toEvents(evs);
        if (stopped) return { kind: "stopped" };
        deliver(events);
        const last = Number(evs[evs.length - 1]!.kv.mod_revision ?? 0);
        if (last + 1 > next) next = last + 1;
      }
      if (progress + 1 > next) next = progress + 1;
      return end;
    };

    let result: SessionEnd;
    try {
      for (;;) {
        if (stopped) {
          result = { kind: "stopped" };
          break;
        }
        if (inbox.length === 0) {
          if (readEnd) {
            result = readEnd;
            break;
          }
          await new Promise<void>((r) => {
            wakeProcessor = r;
          });
          continue;
        }
        const end = await take(inbox.splice(0));
        if (end) {
          result = end;
          break;
        }
      }
    } catch (cause) {
      result = {
        kind: "failed",
        err: new RegistryError(`etcd watch at ${src.where}: reading events`, { cause }),
      };
    } finally {
      current = null;
      stream.cancel();
    }
    // the reader ends with the cancelled stream; what it read after the end is replayed from `next`
    await reader;
    return stopped ? { kind: "stopped" } : result;
  };

  const resync = async (): Promise<boolean> => {
    try {
      const { records, revision } = await src.relist();
      if (stopped) return true;
      deliver([{ type: "resync", records, revision }]);
      next = revision + 1;
      return true;
    } catch (cause) {
      failed(new RegistryError(`etcd watch at ${src.where}: re-listing`, { cause }));
      return false;
    }
  };

  const run = async () => {
    while (!stopped) {
      const end = await session();
      if (end.kind === "stopped") break;
      if (end.kind === "resync") {
        log.warn("etcd cannot replay the watch from its revision; re-listing", {
          fromRevision: next,
          why: end.why,
        });
        while (!stopped && !(await resync())) await sleep(bump());
        continue;
      }
      failed(end.err);
      if (!stopped) await sleep(bump());
    }
  };

  const bump = () => {
    const d = delay * (0.8 + 0.4 * Math.random());
    delay = Math.min(backoff.maxMs, delay * 2);
    return d;
  };

  run().catch((err) => log.error("etcd watch loop died (a bug)", { err: errorText(err) }));

  return {
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        current?.cancel();
      } catch {
        // already closed
      }
      wake?.();
    },
  };
}
