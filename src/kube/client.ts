/**
 * A small Kubernetes API client over Bun's fetch, for the few calls the kube subnet
 * manager makes: get a Node or a Pod, list Nodes a page at a time, watch Nodes (chunked
 * JSON lines), and PATCH a Node or its status. TLS with the connection's CA, client
 * certificate and server name; bearer token (a token file is re-read every minute, as
 * client-go does, since projected tokens rotate) or basic auth. Errors carry the HTTP
 * status and the API's Status reason. Why not @kubernetes/client-node:
 * docs/kubernetes-client.md.
 */
import { readFileSync } from "node:fs";
import { VERSION } from "../version.ts";
import type { KubeConnection } from "./connection.ts";

/** A failed API call: `status` is the HTTP status (0 when no answer came), `reason` the Status reason. */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type PatchKind = "strategic" | "merge" | "json";
const PATCH_CONTENT_TYPES: Record<PatchKind, string> = {
  strategic: "application/strategic-merge-patch+json",
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
};

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
export interface RawWatchEvent {
  readonly type: WatchEventType;
  // biome-ignore lint/suspicious/noExplicitAny: API objects are read field by field by their consumers
  readonly object: any;
}

export interface ListPage {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  /** The token for the next page; "" when this was the last. */
  readonly continue: string;
}

export interface KubeClientOptions {
  /** Per request (not watches); default 30 s. */
  readonly timeoutMs?: number;
  readonly userAgent?: string;
  /** For tests: how the token file is read. */
  readonly readFile?: (p: string) => string;
  readonly now?: () => number;
}

const TOKEN_FILE_TTL_MS = 60_000;

export class KubeClient {
  readonly server: string;
  readonly #conn: KubeConnection;
  readonly #session: Bun.FetchSession;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #read: (p: string) => string;
  readonly #now: () => number;
  #token: { value: string; at: number } | null = null;

  constructor(conn: KubeConnection, opts: KubeClientOptions = {}) {
    this.#conn = conn;
    this.server = conn.server.replace(/\/+$/, "");
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#userAgent = opts.userAgent ?? `tartan/${VERSION} (linux) kube-subnet-mgr`;
    this.#read = opts.readFile ?? ((p) => readFileSync(p, "utf8"));
    this.#now = opts.now ?? Date.now;
    const tls: BunFetchRequestInitTLS = { rejectUnauthorized: !conn.insecureSkipTlsVerify };
    if (conn.ca) tls.ca = conn.ca;
    if (conn.cert && conn.key) {
      tls.cert = conn.cert;
      tls.key = conn.key;
    }
    if (conn.tlsServerName) tls.serverName = conn.tlsServerName;
    this.#session = new Bun.FetchSession({ tls });
  }

  get source(): string {
    return this.#conn.source;
  }

  #authorization(): string | null {
    const a = this.#conn.auth;
    switch (a.kind) {
      case "none":
        return null;
      case "token":
        return `Bearer ${a.token}`;
      case "basic":
        return `Basic ${Buffer.from(`${a.username}:${a.password}`).toString("base64")}`;
      case "tokenFile": {
        const now = this.#now();
        if (!this.#token || now - this.#token.at >= TOKEN_FILE_TTL_MS) {
          try {
            this.#token = { value: this.#read(a.path).trim(), at: now };
          } catch (cause) {
            // keep using the last token we read; the file may be mid-rotation
            if (!this.#token)
              throw new KubeApiError(`cannot read the token file ${a.path}`, 0, "TokenFile", { cause });
          }
        }
        return `Bearer ${this.#token.value}`;
      }
    }
  }

  /** One request; a non-2xx answer throws KubeApiError with the Status message. */
  async request(
    method: string,
    path: string,
    o: {
      query?: Record<string, string | number | boolean | undefined>;
      body?: string;
      contentType?: string;
      signal?: AbortSignal;
      /** false for watches (they stay open); default: the client's timeout. */
      timeout?: boolean;
    } = {},
  ): Promise<Response> {
    const url = new URL(this.server + path);
    for (const [k, val] of Object.entries(o.query ?? {}))
      if (val !== undefined) url.searchParams.set(k, String(val));
    const headers: Record<string, string> = { Accept: "application/json", "User-Agent": this.#userAgent };
    const auth = this.#authorization();
    if (auth) headers.Authorization = auth;
    if (o.contentType) headers["Content-Type"] = o.contentType;
    const signals = [o.signal, o.timeout === false ? undefined : AbortSignal.timeout(this.#timeoutMs)].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    let res: Response;
    try {
      res = await this.#session.fetch(url, {
        method,
        headers,
        body: o.body,
        signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0],
      });
    } catch (cause) {
      const what = cause instanceof Error && cause.name === "TimeoutError" ? "timed out" : "failed";
      throw new KubeApiError(`${method} ${this.server}${path} ${what}`, 0, "Unreachable", { cause });
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let reason = "";
    let message = text.trim().slice(0, 300) || res.statusText;
    try {
      const st = JSON.parse(text) as { kind?: string; reason?: string; message?: string };
      if (st.kind === "Status") {
        reason = st.reason ?? "";
        message = st.message ?? message;
      }
    } catch {}
    throw new KubeApiError(
      `${method} ${path}: ${res.status} ${reason || res.statusText}: ${message}`,
      res.status,
      reason,
    );
  }

  async #json<T>(method: string, path: string, o: Parameters<KubeClient["request"]>[2] = {}): Promise<T> {
    const res = await this.request(method, path, o);
    try {
      return (await res.json()) as T;
    } catch (cause) {
      throw new KubeApiError(`${method} ${path}: the answer is not JSON`, res.status, "BadResponse", {
        cause,
      });
    }
  }

  getNode(name: string, signal?: AbortSignal): Promise<unknown> {
    return this.#json("GET", `/api/v1/nodes/${encodeURIComponent(name)}`, { signal });
  }

  getPod(namespace: string, name: string, signal?: AbortSignal): Promise<unknown> {
    return this.#json(
      "GET",
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
      {
        signal,
      },
    );
  }

  /** One page of Nodes (limit 0 = all at once). */
  async listNodes(
    o: { limit?: number; continue?: string; fieldSelector?: string; signal?: AbortSignal } = {},
  ): Promise<ListPage> {
    const doc = await this.#json<{
      items?: unknown;
      metadata?: { resourceVersion?: unknown; continue?: unknown };
    }>("GET", "/api/v1/nodes", {
      query: {
        limit: o.limit || undefined,
        continue: o.continue || undefined,
        fieldSelector: o.fieldSelector,
      },
      signal: o.signal,
    });
    const rv = doc.metadata?.resourceVersion;
    if (!Array.isArray(doc.items) || typeof rv !== "string")
      throw new KubeApiError("GET /api/v1/nodes: the answer is not a NodeList", 200, "BadResponse");
    const cont = doc.metadata?.continue;
    return { items: doc.items, resourceVersion: rv, continue: typeof cont === "string" ? cont : "" };
  }

  /**
   * Opens a watch of Nodes from `resourceVersion`; the events arrive in batches (the
   * lines of one network read) until the server ends the stream or `signal` aborts.
   */
  async watchNodes(o: {
    resourceVersion: string;
    timeoutSeconds?: number;
    allowWatchBookmarks?: boolean;
    fieldSelector?: string;
    signal?: AbortSignal;
  }): Promise<AsyncIterable<RawWatchEvent[]>> {
    const res = await this.request("GET", "/api/v1/nodes", {
      query: {
        watch: 1,
        resourceVersion: o.resourceVersion,
        allowWatchBookmarks: o.allowWatchBookmarks ?? true,
        timeoutSeconds: o.timeoutSeconds,
        fieldSelector: o.fieldSelector,
      },
      signal: o.signal,
      timeout: false,
    });
    if (!res.body) throw new KubeApiError("watch of /api/v1/nodes: no body", res.status, "BadResponse");
    return watchLines(res.body);
  }

  /** PATCH nodes/NAME (or nodes/NAME/status); returns the Node as stored. */
  patchNode(
    name: string,
    body: string,
    o: { kind?: PatchKind; subresource?: "status"; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    const sub = o.subresource ? `/${o.subresource}` : "";
    return this.#json("PATCH", `/api/v1/nodes/${encodeURIComponent(name)}${sub}`, {
      body,
      contentType: PATCH_CONTENT_TYPES[o.kind ?? "strategic"],
      signal: o.signal,
    });
  }

  /** Closes idle pooled connections. */
  close(): void {
    this.#session.close();
  }
}

/** Splits a watch body into JSON events, batched per network read. */
async function* watchLines(body: ReadableStream<Uint8Array>): AsyncGenerator<RawWatchEvent[]> {
  const decoder = new TextDecoder();
  let buf = "";
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (!done) buf += decoder.decode(value, { stream: true });
      // the last line of a stream cut short has no newline
      const nl = done ? buf.length : buf.lastIndexOf("\n");
      if (nl > 0) {
        const lines = buf.slice(0, nl).split("\n");
        buf = buf.slice(nl + 1);
        const batch = parseLines(lines);
        if (batch.length) yield batch;
      }
      if (done) break;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseLines(lines: string[]): RawWatchEvent[] {
  const batch: RawWatchEvent[] = [];
  for (const line of lines) {
    if (line.trim() === "") continue;
    let ev: RawWatchEvent;
    try {
      ev = JSON.parse(line) as RawWatchEvent;
    } catch (cause) {
      throw new KubeApiError(
        `watch of /api/v1/nodes: a line is not JSON: ${line.slice(0, 80)}`,
        200,
        "BadResponse",
        {
          cause,
        },
      );
    }
    if (typeof ev !== "object" || ev === null || typeof ev.type !== "string")
      throw new KubeApiError(
        `watch of /api/v1/nodes: not a watch event: ${line.slice(0, 80)}`,
        200,
        "BadResponse",
      );
    batch.push(ev);
  }
  return batch;
}
