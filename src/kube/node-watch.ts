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
 * is never held whole).
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
  for (let attempt = 0; ; attempt++) {
    sink.listStart();
    let cont = "";
    let rv = "";
    try {
      do {
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

/** Starts the list+watch loop (see the module comment). */
export function startNodeWatch(client: KubeClient, sink: NodeSink, o: NodeWatchOptions): NodeWatchHandle {
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  const random = o.random ?? Math.random;
  const minWatch = o.minWatchSeconds ?? 300;
  const log = o.log.with({ api: client.server });
  let rv = o.resourceVersion ?? "";
  let stopped = false;
  let failing = false;
  let delay = backoff.initialMs;
  const abort = new AbortController();
  let wake: (() => void) | null = null;

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

  const ok = () => {
    delay = backoff.initialMs;
    if (!failing) return;
    failing = false;
    log.info("Kubernetes API reachable again; the Node watch resumes", { resourceVersion: rv });
    sink.onRecovered?.();
  };
  const failed = (err: Error) => {
    if (!failing)
      log.warn("Kubernetes API failed; the datapath keeps what it has while the Node watch retries", { err });
    else log.debug("Kubernetes API still failing", { err: errorText(err) });
    failing = true;
    sink.onError?.(err);
  };

  /** One watch, from rv, until the server ends it; "gone" when rv is too old. */
  const watchOnce = async (): Promise<"ended" | "gone"> => {
    const timeoutSeconds = Math.floor(minWatch * (1 + random()));
    const idleMs = o.idleTimeoutMs ?? (timeoutSeconds + 60) * 1000;
    const session = new AbortController();
    const onStop = () => session.abort();
    abort.signal.addEventListener("abort", onStop);
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
      const stream = await client.watchNodes({
        resourceVersion: rv,
        timeoutSeconds,
        allowWatchBookmarks: true,
        fieldSelector: o.fieldSelector,
        signal: session.signal,
      });
      ok();
      for await (const batch of stream) {
        arm();
        const events: RawWatchEvent[] = [];
        for (const ev of batch) {
          const evRv = ev.object?.metadata?.resourceVersion;
          if (ev.type === "ERROR") {
            const code = ev.object?.code;
            if (code === 410) {
              if (events.length) sink.events(events);
              return "gone";
            }
            throw new KubeApiError(
              `watch of /api/v1/nodes: ${ev.object?.reason ?? "error"}: ${ev.object?.message ?? JSON.stringify(ev.object)}`,
              typeof code === "number" ? code : 0,
              String(ev.object?.reason ?? ""),
            );
          }
          if (ev.type !== "BOOKMARK") events.push(ev);
          if (typeof evRv === "string" && evRv !== "") rv = evRv;
        }
        if (events.length && !stopped) sink.events(events);
      }
      return "ended";
    } catch (e) {
      if (quiet && !stopped)
        throw new KubeApiError(`watch of /api/v1/nodes: nothing received for ${idleMs} ms`, 0, "Idle", {
          cause: e,
        });
      throw e;
    } finally {
      if (idle) clearTimeout(idle);
      abort.signal.removeEventListener("abort", onStop);
    }
  };

  const relist = async () => {
    rv = await listNodesInto(client, sink, {
      pageSize: o.pageSize,
      fieldSelector: o.fieldSelector,
      signal: abort.signal,
    });
    ok();
  };

  const loop = async () => {
    let needList = rv === "";
    while (!stopped) {
      try {
        if (needList) {
          await relist();
          needList = false;
        }
        // Bun's fetch resolves a watch only with its first event, which on a quiet cluster
        // is the first bookmark (a minute away): say "recovered" as soon as the API answers
        if (failing) {
          await client.listNodes({ limit: 1, fieldSelector: o.fieldSelector, signal: abort.signal });
          ok();
        }
        const started = Date.now();
        const end = await watchOnce();
        if (end === "gone") {
          log.info("Node watch history is gone (410); listing again", { resourceVersion: rv });
          needList = true;
        } else if (Date.now() - started < 1000 && !stopped) {
          // the server (or a proxy) ends watches at once: do not spin; the next one waits
          await sleep(delay * (0.8 + 0.4 * random()));
          delay = Math.min(delay * 2, backoff.maxMs);
        }
        // else "ended" after a while: the server closed the watch (timeoutSeconds): re-open at once
      } catch (e) {
        if (stopped) break;
        if (isGone(e)) {
          log.info("Node watch history is gone (410); listing again", { resourceVersion: rv });
          needList = true;
          continue;
        }
        failed(e instanceof Error ? e : new Error(String(e)));
        const jitter = 0.8 + 0.4 * random();
        await sleep(delay * jitter);
        delay = Math.min(delay * 2, backoff.maxMs);
      }
    }
  };

  const done = loop();
  return {
    get resourceVersion() {
      return rv;
    },
    stop() {
      stopped = true;
      abort.abort();
      wake?.();
    },
    done,
  };
}
