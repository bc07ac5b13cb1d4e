/**
 * etcd's v3 API through its JSON gateway, which every etcd since 3.3 serves on its client
 * URLs (`/v3/kv/range`, `/v3/watch`, …): one POST per call over Bun's own fetch (pooled
 * keep-alive connections, TLS, TCP keepalive on every socket), keys and values in base64,
 * 64-bit numbers as decimal strings. A watch is one long POST whose response is a stream
 * of JSON lines, one WatchResponse each.
 *
 * Why not the etcd3 package: grpc-js and protobufjs cost the agent about 37 MiB of RSS
 * and four times the CPU per request (bench/CONTROL-PLANE.md has the figures).
 *
 * Endpoints are tried in turn: a call that cannot reach one goes to the next, and the
 * one that answered is used first from then on. With a username, the client
 * authenticates once and sends the token with every call; a token etcd no longer
 * accepts is replaced once per call.
 */
import { errorText } from "../log.ts";

export interface GatewayTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface GatewayOptions {
  /** Client URLs: "http://10.0.0.1:2379", "https://…" (user info is never sent). */
  readonly endpoints: readonly string[];
  readonly tls?: GatewayTls;
  readonly auth?: { readonly username: string; readonly password: string };
  /** Deadline of one call (not of a watch); default 10 s. */
  readonly requestTimeoutMs?: number;
}

/** etcd answered with an error (its gRPC status code and message), or could not be reached. */
export class EtcdCallError extends Error {
  override name = "EtcdCallError";
  constructor(
    message: string,
    /** gRPC status code etcd gave (16 = unauthenticated, 7 = permission denied…); null when unreached. */
    readonly code: number | null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A key-value pair as the gateway writes it. */
export interface GatewayKv {
  readonly key: string;
  readonly value?: string;
  readonly mod_revision?: string;
  readonly create_revision?: string;
  readonly lease?: string;
}

export interface GatewayHeader {
  readonly revision?: string;
}

export interface RangeResponse {
  readonly header?: GatewayHeader;
  readonly kvs?: readonly GatewayKv[];
  readonly more?: boolean;
}

export interface TxnResponse {
  readonly header?: GatewayHeader;
  readonly succeeded?: boolean;
  readonly responses?: readonly { readonly response_range?: RangeResponse }[];
}

export interface WatchResponse {
  readonly header?: GatewayHeader;
  readonly created?: boolean;
  readonly canceled?: boolean;
  readonly cancel_reason?: string;
  readonly compact_revision?: string;
  readonly fragment?: boolean;
  readonly events?: readonly { readonly type?: "PUT" | "DELETE"; readonly kv: GatewayKv }[];
}

/** An open watch: its responses in order, until the stream ends or is cancelled. */
export interface GatewayWatch {
  readonly responses: AsyncIterable<WatchResponse>;
  cancel(): void;
}

/** etcd's v3 API in the gateway's JSON shapes, however it is carried. */
export interface EtcdTransport {
  /** One unary call, by its gateway path ("/v3/kv/range"). */
  call<T>(path: string, body: unknown): Promise<T>;
  /** Opens a watch with this create request. */
  watch(create: Record<string, unknown>): Promise<GatewayWatch>;
  close(): void;
}

export const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");
export const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, "base64").toString("utf8") : "");

/** gRPC code etcd uses for a token it no longer accepts. */
const UNAUTHENTICATED = 16;

/** Endpoint without user info or a trailing slash. */
function baseUrl(endpoint: string): string {
  const u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`);
  return `${u.protocol}//${u.host}`;
}

export class EtcdGateway implements EtcdTransport {
  readonly #bases: string[];
  readonly #o: GatewayOptions;
  #current = 0;
  #token: Promise<string> | null = null;

  constructor(o: GatewayOptions) {
    this.#o = o;
    this.#bases = o.endpoints.map(baseUrl);
  }

  #init(body: unknown, token: string | null, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token !== null) headers.authorization = token;
    const init: RequestInit & { tls?: GatewayTls } = {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal,
    };
    if (this.#o.tls) init.tls = this.#o.tls;
    return init;
  }

  /** POST to the first endpoint that answers, starting with the one that answered last. */
  async #post(
    path: string,
    body: unknown,
    token: string | null,
    signal: () => AbortSignal,
  ): Promise<Response> {
    let last: unknown;
    for (let i = 0; i < this.#bases.length; i++) {
      const at = (this.#current + i) % this.#bases.length;
      try {
        const res = await fetch(`${this.#bases[at]}${path}`, this.#init(body, token, signal()));
        this.#current = at;
        return res;
      } catch (e) {
        last = e;
      }
    }
    throw new EtcdCallError(`cannot reach etcd: ${errorText(last)}`, null, { cause: last });
  }

  async #token_(fresh: boolean): Promise<string | null> {
    const auth = this.#o.auth;
    if (!auth) return null;
    if (fresh || !this.#token) {
      const p = this.#unary<{ token?: string }>("/v3/auth/authenticate", {
        name: auth.username,
        password: auth.password,
      }).then((r) => {
        if (!r.token) throw new EtcdCallError("etcd returned no auth token", null);
        return r.token;
      });
      this.#token = p;
      p.catch(() => {
        if (this.#token === p) this.#token = null;
      });
    }
    return this.#token;
  }

  async #unary<T>(path: string, body: unknown, token: string | null = null): Promise<T> {
    const timeout = this.#o.requestTimeoutMs ?? 10_000;
    const res = await this.#post(path, body, token, () => AbortSignal.timeout(timeout));
    const text = await res.text();
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new EtcdCallError(`etcd answered ${res.status} with ${text.slice(0, 200) || "nothing"}`, null);
    }
    if (!res.ok || (doc as { error?: unknown }).error !== undefined) throw callError(res.status, doc);
    return doc as T;
  }

  /** One unary call (path as "/v3/kv/range"); the token is refreshed once when etcd refuses it. */
  async call<T>(path: string, body: unknown): Promise<T> {
    try {
      return await this.#unary<T>(path, body, await this.#token_(false));
    } catch (e) {
      if (!(e instanceof EtcdCallError) || e.code !== UNAUTHENTICATED || !this.#o.auth) throw e;
      return this.#unary<T>(path, body, await this.#token_(true));
    }
  }

  /** Opens a watch with this create request; rejects when no endpoint answers or etcd refuses. */
  async watch(create: Record<string, unknown>): Promise<GatewayWatch> {
    const abort = new AbortController();
    const open = async (token: string | null) => {
      const res = await this.#post("/v3/watch", { create_request: create }, token, () => abort.signal);
      if (!res.ok) {
        const text = await res.text();
        let doc: unknown = null;
        try {
          doc = JSON.parse(text);
        } catch {}
        throw callError(res.status, doc);
      }
      return res;
    };
    let res: Response;
    try {
      res = await open(await this.#token_(false));
    } catch (e) {
      if (!(e instanceof EtcdCallError) || e.code !== UNAUTHENTICATED || !this.#o.auth) throw e;
      res = await open(await this.#token_(true));
    }
    const body = res.body;
    if (!body) throw new EtcdCallError("etcd watch answered without a body", null);
    return { responses: watchLines(body), cancel: () => abort.abort() };
  }

  /** Nothing to release: fetch pools its connections and drops idle ones by itself. */
  close(): void {}
}

function callError(status: number, doc: unknown): EtcdCallError {
  const d = (doc ?? {}) as { error?: unknown; message?: unknown; code?: unknown };
  const inner = typeof d.error === "object" && d.error !== null ? (d.error as typeof d) : d;
  const message =
    typeof inner.message === "string" && inner.message
      ? inner.message
      : typeof inner.error === "string"
        ? inner.error
        : `HTTP ${status}`;
  const code = typeof inner.code === "number" ? inner.code : typeof d.code === "number" ? d.code : null;
  return new EtcdCallError(message, code);
}

/** The watch response stream: one JSON document per line, `{"result":…}` or `{"error":…}`. */
async function* watchLines(body: ReadableStream<Uint8Array>): AsyncGenerator<WatchResponse> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n", start)) {
      const line = buffered.slice(start, nl).trim();
      start = nl + 1;
      if (!line) continue;
      const doc = JSON.parse(line) as { result?: WatchResponse; error?: unknown };
      if (doc.error !== undefined) throw callError(200, doc);
      if (doc.result) yield doc.result;
    }
    buffered = buffered.slice(start);
  }
}
