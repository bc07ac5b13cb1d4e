/**
 * etcd's v3 API through its JSON gateway, which every etcd since 3.3 serves on its client
 * URLs (`/v3/kv/range`, `/v3/watch`, …): one POST per call over Bun's own fetch (pooled
 * keep-alive connections, TLS, TCP keepalive on every socket), keys and values in base64,
 * 64-bit numbers as decimal strings. A watch is one long POST whose response is a stream
 * of JSON lines, one WatchResponse each.
 *
 * Why not the etcd3 package: measured against main's etcd3 agent, grpc-js and protobufjs
 * cost ~22–24 MiB of idle RSS, and listing 10,000 leases took 3.5× the CPU
 * (bench/CONTROL-PLANE.md, issue 15, has the figures).
 *
 * Several members (etcd-calls.ts): every call asks for a member with a leader (the
 * gateway passes a `Grpc-Metadata-hasleader` header on as gRPC metadata); a call that
 * cannot reach a member, gets no answer within its attempt's deadline, or is refused for
 * the member's sake ("etcdserver: no leader") goes to the next one; the member that
 * answered is used first from then on, one that failed is tried last for a second, and
 * a watch that a member ended sends the next watch elsewhere. With a username, the
 * client authenticates once and sends the token with every call; a token etcd no longer
 * accepts is replaced once per call.
 */
import { errorText } from "../log.ts";
import { attemptMs, isMemberFault, MemberOrder, REQUIRE_LEADER } from "./etcd-calls.ts";

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
  /** Deadline of one attempt of a call (and of opening a watch); default 10 s. */
  readonly requestTimeoutMs?: number;
  /** The TTL (ms) of a lease granted for a put not yet done (its attempts get a sixth: attemptMs). */
  readonly leaseTtlMs?: (id: string) => number | undefined;
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

/** etcd3's method names of the gateway paths whose deadline depends on the request (attemptMs). */
const METHODS: Record<string, string> = { "/v3/lease/grant": "leaseGrant", "/v3/kv/txn": "txn" };

/** Is this failure of one attempt the member's rather than the request's (try the next member)? */
function memberFault(e: unknown): boolean {
  return !(e instanceof EtcdCallError) || isMemberFault(e.code);
}

export class EtcdGateway implements EtcdTransport {
  readonly #bases: string[];
  readonly #o: GatewayOptions;
  readonly #members: MemberOrder;
  #token: Promise<string> | null = null;

  constructor(o: GatewayOptions) {
    this.#o = o;
    this.#bases = o.endpoints.map(baseUrl);
    this.#members = new MemberOrder(this.#bases.length);
  }

  #init(body: unknown, token: string | null, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      [`grpc-metadata-${REQUIRE_LEADER.key}`]: REQUIRE_LEADER.value,
    };
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

  /**
   * POSTs to the members in turn (etcd-calls.ts's order) until one answers and `read`
   * accepts its answer within `ms`; a failure that is the request's (not the member's)
   * is thrown at once. Returns what `read` made of it, and the attempt's controller (it
   * aborts a response still being read: a watch stream).
   */
  async #post<T>(
    path: string,
    body: unknown,
    token: string | null,
    ms: number,
    read: (res: Response) => Promise<T>,
  ): Promise<{ value: T; member: number; abort: AbortController }> {
    let last: unknown;
    for (const m of this.#members.order(Date.now())) {
      const abort = new AbortController();
      const base = this.#bases[m]!;
      const timer = setTimeout(
        () => abort.abort(new EtcdCallError(`no answer from ${base} within ${ms} ms`, null)),
        ms,
      );
      try {
        const value = await read(await fetch(`${base}${path}`, this.#init(body, token, abort.signal)));
        this.#members.ok(m);
        return { value, member: m, abort };
      } catch (e) {
        if (!memberFault(e)) throw e;
        last = e;
        this.#members.failed(m, Date.now());
      } finally {
        clearTimeout(timer);
      }
    }
    // every member failed: etcd's own word when one answered ("etcdserver: no leader")
    if (last instanceof EtcdCallError && last.code !== null) throw last;
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
    const method = METHODS[path];
    const ms =
      method === undefined
        ? timeout
        : attemptMs({ method, params: body }, timeout, this.#o.leaseTtlMs ?? (() => undefined));
    const r = await this.#post(path, body, token, ms, async (res) => {
      const text = await res.text();
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new EtcdCallError(`etcd answered ${res.status} with ${text.slice(0, 200) || "nothing"}`, null);
      }
      if (!res.ok || (doc as { error?: unknown }).error !== undefined) throw callError(res.status, doc);
      return doc as T;
    });
    return r.value;
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

  /**
   * Opens a watch with this create request; rejects when no member answers or etcd
   * refuses. A stream that fails or ends (not cancelled) sends the next call elsewhere.
   */
  async watch(create: Record<string, unknown>): Promise<GatewayWatch> {
    const timeout = this.#o.requestTimeoutMs ?? 10_000;
    const open = (token: string | null) =>
      this.#post("/v3/watch", { create_request: create }, token, timeout, async (res) => {
        if (!res.ok) {
          const text = await res.text();
          let doc: unknown = null;
          try {
            doc = JSON.parse(text);
          } catch {}
          throw callError(res.status, doc);
        }
        if (!res.body) throw new EtcdCallError("etcd watch answered without a body", null);
        return res.body;
      });
    let opened: Awaited<ReturnType<typeof open>>;
    try {
      opened = await open(await this.#token_(false));
    } catch (e) {
      if (!(e instanceof EtcdCallError) || e.code !== UNAUTHENTICATED || !this.#o.auth) throw e;
      opened = await open(await this.#token_(true));
    }
    const { value: body, member, abort } = opened;
    const members = this.#members;
    async function* responses(): AsyncGenerator<WatchResponse> {
      try {
        yield* watchLines(body);
      } finally {
        // ended by the member (a failure, "no leader" after three election timeouts, or a close), not by us
        if (!abort.signal.aborted) members.failed(member, Date.now());
      }
    }
    return { responses: responses(), cancel: () => abort.abort() };
  }

  /** Nothing to release: fetch pools its connections and drops idle ones by itself. */
  close(): void {}
}

function callError(status: number, doc: unknown): EtcdCallError {
  type Doc = { error?: unknown; message?: unknown; code?: unknown; grpc_code?: unknown };
  const d = (doc ?? {}) as Doc;
  // unary calls: {"error":"…","message":"…","code":14}; watch streams: {"error":{"grpc_code":14,"message":"…"}}
  const inner = typeof d.error === "object" && d.error !== null ? (d.error as Doc) : d;
  const message =
    typeof inner.message === "string" && inner.message
      ? inner.message
      : typeof inner.error === "string"
        ? inner.error
        : `HTTP ${status}`;
  const codes = [inner.code, inner.grpc_code, d.code];
  const code = (codes.find((c) => typeof c === "number") as number | undefined) ?? null;
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
