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

export type SessionEnd =
  | { kind: "stopped" }
  | { kind: "resync"; why: string }
  | { kind: "failed"; err: Error };

/** What a batch of watch responses says, read without I/O (readWatchBatch). */
export interface BatchReading {
  /** Complete events, in order, to turn into WatchEvents and deliver. */
  readonly events: GatewayEvent[];
  /** Events of a fragmented response whose last fragment has not arrived yet. */
  readonly pending: GatewayEvent[];
  /** The highest revision a progress notification vouched for (0: none). */
  readonly progress: number;
  /** The stream was (re)created at a revision not behind what was seen: the watch works again. */
  readonly created: boolean;
  /** The end of the session, when a response in the batch ends it (the rest is ignored). */
  readonly end: SessionEnd | null;
}

/**
 * Reads a batch of responses in order: compaction means a resync, a cancel a failure, a
 * creation at a revision behind `next - 1` (the store went backwards) a resync; fragments
 * are held in `pending` until their last one; an empty response is a progress notification.
 */
export function readWatchBatch(
  batch: readonly WatchResponse[],
  pendingIn: readonly GatewayEvent[],
  next: number,
  where: string,
): BatchReading {
  const events: GatewayEvent[] = [];
  let pending: GatewayEvent[] = [...pendingIn];
  let progress = 0;
  let created = false;
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
          `etcd watch at ${where}: canceled by the server: ${res.cancel_reason || "no reason given"}`,
        ),
      };
      break;
    }
    if (res.created) {
      const current = Number(res.header?.revision ?? 0);
      // we have seen revisions this store never had: it was restored or recreated
      if (current < next - 1) {
        end = { kind: "resync", why: `etcd is at revision ${current}, behind the ${next - 1} already seen` };
        break;
      }
      created = true;
      continue;
    }
    for (const e of res.events ?? []) pending.push(e);
    if (res.fragment) continue;
    // an empty response is a progress notification: etcd has sent everything up to its revision
    if (pending.length === 0) progress = Math.max(progress, Number(res.header?.revision ?? 0));
    for (const e of pending) events.push(e);
    pending = [];
  }
  return { events, pending, progress, created, end };
}

/**
 * One open stream read as fast as it comes: responses that arrive while the previous ones
 * are being turned into events (lease expiry lookups: a round trip each) wait here and are
 * taken together, so their lookups run at once, not one after another.
 */
class ResponseInbox {
  readonly #inbox: WatchResponse[] = [];
  #readEnd: SessionEnd | null = null;
  #wake: (() => void) | null = null;
  /** Resolves when the stream has ended (after cancel()). */
  readonly done: Promise<void>;

  constructor(stream: GatewayWatch, where: string) {
    this.done = this.#read(stream, where);
  }

  async #read(stream: GatewayWatch, where: string): Promise<void> {
    try {
      for await (const res of stream.responses) {
        this.#inbox.push(res);
        this.#signal();
      }
      this.#readEnd = { kind: "failed", err: new RegistryError(`etcd watch at ${where}: stream ended`) };
    } catch (cause) {
      this.#readEnd = {
        kind: "failed",
        err: new RegistryError(`etcd watch at ${where}: stream failed`, { cause }),
      };
    }
    this.#signal();
  }

  #signal(): void {
    this.#wake?.();
    this.#wake = null;
  }

  /** Everything received so far (waiting for at least one), or how the stream ended. */
  async take(): Promise<WatchResponse[] | SessionEnd> {
    for (;;) {
      if (this.#inbox.length > 0) return this.#inbox.splice(0);
      if (this.#readEnd) return this.#readEnd;
      await new Promise<void>((r) => {
        this.#wake = r;
      });
    }
  }
}

/** Starts watching; events after `fromRevision` go to `cb.onEvents` in order. */
export function startEtcdWatch(
  src: EtcdWatchSource,
  fromRevision: number,
  cb: WatchCallbacks,
  backoff: BackoffPolicy = DEFAULT_BACKOFF,
): WatchHandle {
  const watch = new EtcdWatch(src, fromRevision, cb, backoff);
  return { stop: () => watch.stop() };
}

/** The watch's state across sessions: the resume point, backoff and failure reporting. */
class EtcdWatch {
  #next: number;
  #stopped = false;
  #failing = false;
  #delay: number;
  #current: GatewayWatch | null = null;
  #wake: (() => void) | null = null;
  readonly #log: Logger;

  constructor(
    private readonly src: EtcdWatchSource,
    fromRevision: number,
    private readonly cb: WatchCallbacks,
    private readonly backoff: BackoffPolicy,
  ) {
    this.#next = fromRevision + 1;
    this.#delay = backoff.initialMs;
    this.#log = src.log.with({ registry: src.where });
    this.#run().catch((err) => this.#log.error("etcd watch loop died (a bug)", { err: errorText(err) }));
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#current?.cancel();
    } catch {
      // already closed
    }
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#wake = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #deliver(events: WatchEvent[]): void {
    if (events.length === 0 || this.#stopped) return;
    try {
      this.cb.onEvents(events);
    } catch (err) {
      this.#log.error("watch consumer threw; events were delivered once and are not retried", { err });
    }
  }

  #recovered(): void {
    this.#delay = this.backoff.initialMs;
    if (!this.#failing) return;
    this.#failing = false;
    this.#log.info("etcd watch recovered", { fromRevision: this.#next });
    this.cb.onRecovered?.();
  }

  #failed(err: Error): void {
    if (this.#stopped) return;
    if (!this.#failing)
      this.#log.warn("etcd watch lost; retrying with backoff", { err, fromRevision: this.#next });
    else this.#log.debug("etcd watch still failing", { err, fromRevision: this.#next });
    this.#failing = true;
    this.cb.onError?.(err);
  }

  /** One stream, from `next`, until it fails, is compacted past, or the watch is stopped. */
  async #session(): Promise<SessionEnd> {
    const { src } = this;
    let stream: GatewayWatch;
    try {
      stream = await src.open({
        key: src.key,
        range_end: src.rangeEnd,
        start_revision: this.#next,
        progress_notify: true,
        fragment: true,
      });
    } catch (cause) {
      return {
        kind: "failed",
        err: new RegistryError(`etcd watch at ${src.where}: cannot open the stream`, { cause }),
      };
    }
    if (this.#stopped) {
      stream.cancel();
      return { kind: "stopped" };
    }
    this.#current = stream;
    const inbox = new ResponseInbox(stream, src.where);
    let result: SessionEnd;
    try {
      result = await this.#pump(inbox);
    } catch (cause) {
      result = {
        kind: "failed",
        err: new RegistryError(`etcd watch at ${src.where}: reading events`, { cause }),
      };
    } finally {
      this.#current = null;
      stream.cancel();
    }
    // the reader ends with the cancelled stream; what it read after the end is replayed from `next`
    await inbox.done;
    return this.#stopped ? { kind: "stopped" } : result;
  }

  /** Takes batches from the inbox until one ends the session. */
  async #pump(inbox: ResponseInbox): Promise<SessionEnd> {
    let pending: GatewayEvent[] = [];
    for (;;) {
      if (this.#stopped) return { kind: "stopped" };
      const batch = await inbox.take();
      if (this.#stopped) return { kind: "stopped" };
      if (!Array.isArray(batch)) return batch;
      const read = readWatchBatch(batch, pending, this.#next, this.src.where);
      pending = read.pending;
      if (read.created) this.#recovered();
      if (read.events.length > 0) {
        const events = await this.src.toEvents(read.events);
        if (this.#stopped) return { kind: "stopped" };
        this.#deliver(events);
        const last = Number(read.events[read.events.length - 1]!.kv.mod_revision ?? 0);
        if (last + 1 > this.#next) this.#next = last + 1;
      }
      if (read.progress + 1 > this.#next) this.#next = read.progress + 1;
      if (read.end) return read.end;
    }
  }

  async #resync(): Promise<boolean> {
    try {
      const { records, revision } = await this.src.relist();
      if (this.#stopped) return true;
      this.#deliver([{ type: "resync", records, revision }]);
      this.#next = revision + 1;
      return true;
    } catch (cause) {
      this.#failed(new RegistryError(`etcd watch at ${this.src.where}: re-listing`, { cause }));
      return false;
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const end = await this.#session();
      if (end.kind === "stopped") break;
      if (end.kind === "resync") {
        this.#log.warn("etcd cannot replay the watch from its revision; re-listing", {
          fromRevision: this.#next,
          why: end.why,
        });
        while (!this.#stopped && !(await this.#resync())) await this.#sleep(this.#bump());
        continue;
      }
      this.#failed(end.err);
      if (!this.#stopped) await this.#sleep(this.#bump());
    }
  }

  #bump(): number {
    const d = this.#delay * (0.8 + 0.4 * Math.random());
    this.#delay = Math.min(this.backoff.maxMs, this.#delay * 2);
    return d;
  }
}
