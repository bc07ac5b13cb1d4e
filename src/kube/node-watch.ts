/**
 * List, then watch, Nodes, forever (client-go's reflector, for one resource): a paged
 * list gives a consistent set and its resourceVersion; the watch resumes from the last
 * resourceVersion seen (events and bookmarks) and is re-opened when the server ends it
 * (timeoutSeconds; after a pause when that happens within a second, so a server or proxy
 * that ends every watch at once is not hammered), when it goes quiet for too long (a
 * half-open connection), and after a failure with capped, jittered backoff. A 410 Gone
 * (an ERROR event or the HTTP status: the history was compacted) means a fresh list.
 * Errors and recovery are reported once each, so health can say "degraded" while the
 * datapath keeps what it has.
 *
 * Nothing is kept here: pages and events go to a sink as they arrive (a 10,000-node list
 * is never held whole). Between the pages of a list the heap is collected: a page of 500
 * Nodes is ~3 MB of JSON and several times that parsed, and without a collection the
 * pages' garbage piles up faster than the collector runs on its own (measured:
 * bench/CONTROL-PLANE.md, "Node informer"). A full collection costs more as the lease
 * table grows, so it is skipped for a page while the collections have taken more than an
 * eighth of the list's time so far (at 50,000 Nodes one after every page added two thirds
 * to the list's CPU).
 */
import { errorText, type Logger } from "../log.ts";
import { KubeApiError, type KubeClient, type RawWatchEvent } from "./client.ts";

export interface NodeSink {
  /** A full list starts (the first, or a re-list after 410); pages follow, then listDone. */
  listStart(): void;
  listPage(nodes: readonly unknown[]): void;
  /** The list is complete and consistent at `resourceVersion`. */
  listDone(resourceVersion: string): void;
  /** Watch events in order, a batch per network read (no BOOKMARK or ERROR here). */
  events(batch: readonly RawWatchEvent[]): void;
  /** The API could not be reached or answered with an error; retries continue. */
  onError?(err: Error): void;
  /** The API answers again after an error. */
  onRecovered?(): void;
}

export interface NodeWatchOptions {
  /** List page size; default 500 (client-go's). */
  readonly pageSize?: number;
  /** Each watch asks the server to end it after a random time in [min, 2·min) seconds; default 300. */
  readonly minWatchSeconds?: number;
  /** No byte (event or bookmark) for this long → the connection is presumed dead; default: the watch timeout + 60 s. */
  readonly idleTimeoutMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Start from this list instead of listing first (the caller listed already). */
  readonly resourceVersion?: string;
  readonly fieldSelector?: string;
  readonly log: Logger;
  readonly random?: () => number;
}

export interface NodeWatchHandle {
  /** The last resourceVersion delivered (list, event or bookmark). */
  readonly resourceVersion: string;
  stop(): void;
  /** Resolves when the loop has ended after stop(). */
  readonly done: Promise<void>;
}

const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 5_000 };

/** A 410 Gone: the resourceVersion is older than the server's history. */
const isGone = (e: unknown) => e instanceof KubeApiError && e.status === 410;

/** Lists Nodes page by page into the sink; returns the list's resourceVersion. */
export async function listNodesInto(
  client: KubeClient,
  sink: Pick<NodeSink, "listStart" | "listPage" | "listDone">,
  o: { pageSize?: number; fieldSelector?: string; signal?: AbortSignal } = {},
): Promise<string> {
  const collector = new PageCollector();
  for (let attempt = 0; ; attempt++) {
    sink.listStart();
    let cont = "";
    let rv = "";
    try {
      do {
        // the previous page is garbage now: collect it before the next one is parsed
        if (cont !== "") collector.betweenPages();
        const page = await client.listNodes({
          limit: o.pageSize ?? 500,
          continue: cont,
          fieldSelector: o.fieldSelector,
          signal: o.signal,
        });
        if (rv === "") rv = page.resourceVersion;
        sink.listPage(page.items);
        cont = page.continue;
      } while (cont !== "");
    } catch (e) {
      // the continue token expired between pages: start the list again (client-go does the same)
      if (isGone(e) && cont !== "" && attempt < 3) continue;
      throw e;
    }
    sink.listDone(rv);
    return rv;
  }
}

/** Full collections between list pages, within an eighth of the list's time (see the module comment). */
class PageCollector {
  readonly #started = performance.now();
  #spent = 0;

  betweenPages(): void {
    if (this.#spent > (performance.now() - this.#started) / 8) return;
    const t = performance.now();
    Bun.gc(true);
    this.#spent += performance.now() - t;
  }
}

/** What one network read of the watch says, read without I/O (readNodeWatchBatch). */
export interface NodeBatchReading {
  /** The events for the sink, in order (no BOOKMARK or ERROR). */
  readonly events: RawWatchEvent[];
  /** The last resourceVersion seen (events and bookmarks), up to where reading stopped. */
  readonly resourceVersion: string;
  /** "gone": a 410 ERROR event (list again); an error: another ERROR event; null: read on. */
  readonly end: "gone" | KubeApiError | null;
}

/** Reads one batch of watch events from resourceVersion `rv`; stops at the first ERROR event. */
export function readNodeWatchBatch(batch: readonly RawWatchEvent[], rv: string): NodeBatchReading {
  const events: RawWatchEvent[] = [];
  for (const ev of batch) {
    const evRv = ev.object?.metadata?.resourceVersion;
    if (ev.type === "ERROR") {
      const code = ev.object?.code;
      if (code === 410) return { events, resourceVersion: rv, end: "gone" };
      const error = new KubeApiError(
        `watch of /api/v1/nodes: ${ev.object?.reason ?? "error"}: ${ev.object?.message ?? JSON.stringify(ev.object)}`,
        typeof code === "number" ? code : 0,
        String(ev.object?.reason ?? ""),
      );
      return { events, resourceVersion: rv, end: error };
    }
    if (ev.type !== "BOOKMARK") events.push(ev);
    if (typeof evRv === "string" && evRv !== "") rv = evRv;
  }
  return { events, resourceVersion: rv, end: null };
}

/** Starts the list+watch loop (see the module comment). */
export function startNodeWatch(client: KubeClient, sink: NodeSink, o: NodeWatchOptions): NodeWatchHandle {
  const watch = new NodeWatch(client, sink, o);
  const done = watch.run();
  return {
    get resourceVersion() {
      return watch.resourceVersion;
    },
    stop: () => watch.stop(),
    done,
  };
}

/** The loop's state: the resume point, backoff, and whether a failure was reported. */
class NodeWatch {
  #rv: string;
  #stopped = false;
  #failing = false;
  #delay: number;
  #wake: (() => void) | null = null;
  readonly #abort = new AbortController();
  readonly #backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly #random: () => number;
  readonly #minWatch: number;
  readonly #log: Logger;

  constructor(
    private readonly client: KubeClient,
    private readonly sink: NodeSink,
    private readonly o: NodeWatchOptions,
  ) {
    this.#backoff = o.backoff ?? DEFAULT_BACKOFF;
    this.#random = o.random ?? Math.random;
    this.#minWatch = o.minWatchSeconds ?? 300;
    this.#log = o.log.with({ api: client.server });
    this.#rv = o.resourceVersion ?? "";
    this.#delay = this.#backoff.initialMs;
  }

  get resourceVersion(): string {
    return this.#rv;
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
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

  #ok(): void {
    this.#delay = this.#backoff.initialMs;
    if (!this.#failing) return;
    this.#failing = false;
    this.#log.info("Kubernetes API reachable again; the Node watch resumes", { resourceVersion: this.#rv });
    this.sink.onRecovered?.();
  }

  #failed(err: Error): void {
    if (!this.#failing)
      this.#log.warn("Kubernetes API failed; the datapath keeps what it has while the Node watch retries", {
        err,
      });
    else this.#log.debug("Kubernetes API still failing", { err: errorText(err) });
    this.#failing = true;
    this.sink.onError?.(err);
  }

  /** One watch, from rv, until the server ends it; "gone" when rv is too old. */
  async #watchOnce(): Promise<"ended" | "gone"> {
    const timeoutSeconds = Math.floor(this.#minWatch * (1 + this.#random()));
    const idleMs = this.o.idleTimeoutMs ?? (timeoutSeconds + 60) * 1000;
    const session = new AbortController();
    const onStop = () => session.abort();
    this.#abort.signal.addEventListener("abort", onStop);
    let idle: ReturnType<typeof setTimeout> | null = null;
    let quiet = false;
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        quiet = true;
        session.abort();
      }, idleMs);
    };
    try {
      arm();
      const stream = await this.client.watchNodes({
        resourceVersion: this.#rv,
        timeoutSeconds,
        allowWatchBookmarks: true,
        fieldSelector: this.o.fieldSelector,
        signal: session.signal,
      });
      this.#ok();
      for await (const batch of stream) {
        arm();
        const read = readNodeWatchBatch(batch, this.#rv);
        this.#rv = read.resourceVersion;
        if (read.end === "gone") {
          if (read.events.length) this.sink.events(read.events);
          return "gone";
        }
        if (read.end) throw read.end;
        if (read.events.length && !this.#stopped) this.sink.events(read.events);
      }
      return "ended";
    } catch (e) {
      if (quiet && !this.#stopped)
        throw new KubeApiError(`watch of /api/v1/nodes: nothing received for ${idleMs} ms`, 0, "Idle", {
          cause: e,
        });
      throw e;
    } finally {
      if (idle) clearTimeout(idle);
      this.#abort.signal.removeEventListener("abort", onStop);
    }
  }

  async #relist(): Promise<void> {
    this.#rv = await listNodesInto(this.client, this.sink, {
      pageSize: this.o.pageSize,
      fieldSelector: this.o.fieldSelector,
      signal: this.#abort.signal,
    });
    this.#ok();
  }

  /** Lists when needed, then watches, until stopped (see the module comment). */
  async run(): Promise<void> {
    let needList = this.#rv === "";
    while (!this.#stopped) {
      try {
        if (needList) {
          await this.#relist();
          needList = false;
        }
        // Bun's fetch resolves a watch only with its first event, which on a quiet cluster
        // is the first bookmark (a minute away): say "recovered" as soon as the API answers
        if (this.#failing) {
          await this.client.listNodes({
            limit: 1,
            fieldSelector: this.o.fieldSelector,
            signal: this.#abort.signal,
          });
          this.#ok();
        }
        const started = Date.now();
        const end = await this.#watchOnce();
        if (end === "gone") {
          this.#log.info("Node watch history is gone (410); listing again", { resourceVersion: this.#rv });
          needList = true;
        } else if (Date.now() - started < 1000 && !this.#stopped) {
          // the server (or a proxy) ends watches at once: do not spin; the next one waits
          await this.#sleep(this.#delay * (0.8 + 0.4 * this.#random()));
          this.#delay = Math.min(this.#delay * 2, this.#backoff.maxMs);
        }
        // else "ended" after a while: the server closed the watch (timeoutSeconds): re-open at once
      } catch (e) {
        if (this.#stopped) break;
        if (isGone(e)) {
          this.#log.info("Node watch history is gone (410); listing again", { resourceVersion: this.#rv });
          needList = true;
          continue;
        }
        this.#failed(e instanceof Error ? e : new Error(String(e)));
        const jitter = 0.8 + 0.4 * this.#random();
        await this.#sleep(this.#delay * jitter);
        this.#delay = Math.min(this.#delay * 2, this.#backoff.maxMs);
      }
    }
  }
}
