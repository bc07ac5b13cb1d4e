/**
 * A STAND-IN for kube-apiserver, for tests and benchmarks: no kube-apiserver can be
 * installed on these machines, so this speaks the real wire protocol for what Tartan and
 * kubectl use — Nodes (and Pods, for POD_NAME → spec.nodeName) — over real HTTP or HTTPS
 * (optionally demanding a bearer token or a client certificate), from an in-memory store:
 *
 * - discovery: /version, /api, /api/v1, /apis (legacy discovery, as kubectl falls back to);
 * - GET list (NodeList with metadata.resourceVersion; fieldSelector metadata.name,
 *   simple labelSelector, limit/continue over a snapshot), GET one, server-side Tables
 *   when the client asks for `as=Table` (what `kubectl get` prints);
 * - watch (`?watch=1`): chunked JSON lines, ADDED/MODIFIED/DELETED, BOOKMARK with
 *   allowWatchBookmarks, ERROR with a 410 Expired Status when the resourceVersion is older
 *   than the bounded event history; timeoutSeconds; initial events when no RV is given;
 * - POST, PUT, DELETE, and PATCH on `nodes/NAME` and `nodes/NAME/status` with strategic
 *   merge, merge and JSON patch (apply-patch is 415); the main resource keeps the status
 *   and the status subresource keeps the spec, as the real registry strategy does; a
 *   podCIDR may only go from unset to set; resourceVersion preconditions give 409;
 * - errors as Status objects (400, 401, 404, 405, 409, 410, 415, 422).
 *
 * It is checked against the real kubectl (test/unit/kube-apiserver.test.ts). Test hooks:
 * pause (an outage: listener and connections closed) and resume, compact (the next watch
 * from an older resourceVersion gets 410), set or clear a podCIDR, bulk-load Nodes.
 *
 * Run in-process with `startKubeApiServer`, or as its own process (e.g. inside a network
 * namespace on the test underlay) with `startKubeApiServerInNamespace`: the process is
 * this file run by Bun, controlled over a Unix socket with the same interface.
 */
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Json,
  jsonPatch,
  mergePatch,
  NODE_PATCH_SCHEMA,
  PatchError,
  strategicMergePatch,
} from "./kube-patch.ts";
import type { Lab, LabProcess } from "./netns.ts";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are free-form JSON here; the handlers check what they use
type Obj = Record<string, any>;

export const STAND_IN_VERSION = "v1.32.0-tartan-standin";

export interface KubeApiServerOptions {
  /** Listen address; 127.0.0.1 by default. */
  readonly host?: string;
  /** 0 (default) = a free port, kept across pause/resume. */
  readonly port?: number;
  /** Serve HTTPS with this certificate; with clientCaFile, require client certificates it signed. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile?: string };
  /** Require `Authorization: Bearer <token>` on every request. */
  readonly token?: string;
  /** Events kept for watches to resume from (older resourceVersions get 410). Default 1000. */
  readonly historyLimit?: number;
  /** How often watchers that allow bookmarks get one. Default 5000 ms. */
  readonly bookmarkIntervalMs?: number;
}

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly contentType: string | null;
  readonly status: number;
  readonly userAgent: string | null;
}

/** What a test drives; the in-process server and the out-of-process one both implement it. */
export interface KubeApiControl {
  /** https://HOST:PORT or http://HOST:PORT */
  readonly url: string;
  createNode(node: Obj): Promise<Obj>;
  /** Creates many Nodes at once, one event each (a bulk load for scale tests). */
  createNodes(nodes: Obj[]): Promise<number>;
  getNode(name: string): Promise<Obj | null>;
  listNodes(): Promise<Obj[]>;
  /** PATCH as a client would (validation and preconditions apply). */
  patchNode(name: string, patch: Json, type?: PatchType, subresource?: "status"): Promise<Obj>;
  /** Sets (or with null clears) spec.podCIDR(s) without the API's immutability rule. */
  setPodCidr(name: string, cidrs: string[] | null): Promise<Obj>;
  /** Sets annotations (null removes one) on many Nodes, one MODIFIED event each (a watch burst). */
  annotateNodes(names: string[], annotations: Record<string, string | null>): Promise<number>;
  deleteNode(name: string): Promise<boolean>;
  createPod(namespace: string, name: string, nodeName: string): Promise<Obj>;
  /** The store's current resourceVersion. */
  resourceVersion(): Promise<number>;
  /** An outage: close every connection and stop listening, until resume(). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Forget the event history up to now (and end open watches): a resumed watch gets 410. */
  compact(): Promise<number>;
  /** Send every bookmark-allowing watcher a BOOKMARK now. */
  bookmark(): Promise<void>;
  /** Open watch connections right now. */
  watcherCount(): Promise<number>;
  requests(): Promise<RequestRecord[]>;
  clearRequests(): Promise<void>;
  close(): Promise<void>;
}

export type PatchType = "strategic" | "merge" | "json";
const PATCH_TYPES: Record<string, PatchType> = {
  "application/strategic-merge-patch+json": "strategic",
  "application/merge-patch+json": "merge",
  "application/json-patch+json": "json",
};

/** An API error: answered as a Status object. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
}

export function statusObject(code: number, reason: string, message: string, details?: Obj): Obj {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: code < 400 ? "Success" : "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

const notFound = (kind: string, name: string) =>
  new ApiError(404, "NotFound", `${kind} "${name}" not found`, { name, kind });

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

type EventType = "ADDED" | "MODIFIED" | "DELETED";
type Kind = "nodes" | "pods";
interface StoredEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly kind: Kind;
  readonly obj: Obj;
  line?: string;
}

interface Selector {
  readonly fields: [string, "=" | "!=", string][];
  readonly labels: [string, "=" | "!=" | "exists" | "!exists", string][];
}

interface Watcher {
  readonly kind: Kind;
  readonly namespace: string | null;
  readonly selector: Selector;
  readonly bookmarks: boolean;
  readonly table: TableMode | null;
  columnsSent: boolean;
  send(line: string): void;
  end(): void;
}

type TableMode = "None" | "Metadata" | "Object";

function parseSelector(fieldSel: string | null, labelSel: string | null, kind: Kind): Selector {
  const fields: Selector["fields"] = [];
  const labels: Selector["labels"] = [];
  const allowed =
    kind === "nodes" ? ["metadata.name"] : ["metadata.name", "metadata.namespace", "spec.nodeName"];
  for (const req of (fieldSel ?? "").split(",").filter(Boolean)) {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(req);
    if (!m) throw new ApiError(400, "BadRequest", `invalid selector: '${req}'; can't understand '${req}'`);
    if (!allowed.includes(m[1]!)) throw new ApiError(400, "BadRequest", `field label not supported: ${m[1]}`);
    fields.push([m[1]!, m[2] === "!=" ? "!=" : "=", m[3]!]);
  }
  for (const req of (labelSel ?? "").split(",").filter(Boolean)) {
    const m = /^(!?)([A-Za-z0-9./_-]+)(?:(==|=|!=)(.*))?$/.exec(req.trim());
    if (!m) throw new ApiError(400, "BadRequest", `unable to parse requirement: ${req}`);
    if (m[3]) labels.push([m[2]!, m[3] === "!=" ? "!=" : "=", m[4]!]);
    else labels.push([m[2]!, m[1] ? "!exists" : "exists", ""]);
  }
  return { fields, labels };
}

function fieldValue(o: Obj, field: string): string {
  if (field === "metadata.name") return o.metadata?.name ?? "";
  if (field === "metadata.namespace") return o.metadata?.namespace ?? "";
  return o.spec?.nodeName ?? "";
}

function matches(o: Obj, s: Selector): boolean {
  for (const [f, op, v] of s.fields) if ((fieldValue(o, f) === v) !== (op === "=")) return false;
  const l: Obj = o.metadata?.labels ?? {};
  for (const [k, op, v] of s.labels) {
    const has = Object.hasOwn(l, k);
    if (op === "exists" && !has) return false;
    if (op === "!exists" && has) return false;
    if (op === "=" && l[k] !== v) return false;
    if (op === "!=" && l[k] === v) return false;
  }
  return true;
}

/** kubectl's short ages: 45s, 3m12s, 25m, 5h3m, 2d4h, 40d, 3y. */
function humanAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  if (h < 192) return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
  if (d < 730) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

const NODE_COLUMNS = [
  ["Name", "string", "name", "Name must be unique within a namespace."],
  ["Status", "string", "", "The status of the node"],
  ["Roles", "string", "", "The roles of the node"],
  [
    "Age",
    "string",
    "",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
  ],
  ["Version", "string", "", "Kubelet Version reported by the node."],
].map(([name, type, format, description]) => ({ name, type, format, description, priority: 0 }));

const POD_COLUMNS = [
  ["Name", "string", "name", "Name must be unique within a namespace."],
  ["Node", "string", "", "NodeName is the node the pod is scheduled on."],
  ["Age", "string", "", "CreationTimestamp of the pod."],
].map(([name, type, format, description]) => ({ name, type, format, description, priority: 0 }));

function nodeCells(n: Obj): unknown[] {
  const ready = (n.status?.conditions ?? []).find((c: Obj) => c.type === "Ready");
  let st = ready
    ? ready.status === "True"
      ? "Ready"
      : ready.status === "False"
        ? "NotReady"
        : "Unknown"
    : "Unknown";
  if (n.spec?.unschedulable) st += ",SchedulingDisabled";
  const roles = Object.keys(n.metadata?.labels ?? {})
    .filter((k) => k.startsWith("node-role.kubernetes.io/"))
    .map((k) => k.slice("node-role.kubernetes.io/".length))
    .sort();
  const age = humanAge(Date.now() - Date.parse(n.metadata?.creationTimestamp ?? new Date().toISOString()));
  return [
    n.metadata.name,
    st,
    roles.length ? roles.join(",") : "<none>",
    age,
    n.status?.nodeInfo?.kubeletVersion ?? "",
  ];
}

function podCells(p: Obj): unknown[] {
  const age = humanAge(Date.now() - Date.parse(p.metadata?.creationTimestamp ?? new Date().toISOString()));
  return [p.metadata.name, p.spec?.nodeName ?? "", age];
}

function tableOf(
  kind: Kind,
  items: Obj[],
  mode: TableMode,
  rv: string,
  columns: boolean,
  extraMeta: Obj = {},
): Obj {
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion: rv, ...extraMeta },
    columnDefinitions: columns ? (kind === "nodes" ? NODE_COLUMNS : POD_COLUMNS) : [],
    rows: items.map((o) => ({
      cells: kind === "nodes" ? nodeCells(o) : podCells(o),
      ...(mode === "None"
        ? {}
        : {
            object:
              mode === "Object"
                ? o
                : { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata },
          }),
    })),
  };
}

/** `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` → the table mode; null = plain objects. */
function tableMode(accept: string | null, includeObject: string | null): TableMode | null {
  if (!accept || !/as=Table/.test(accept)) return null;
  return includeObject === "Object" || includeObject === "None" ? includeObject : "Metadata";
}

const withKind = (kind: Kind, o: Obj): Obj => ({
  kind: kind === "nodes" ? "Node" : "Pod",
  apiVersion: "v1",
  ...o,
});
function withoutKind(o: Obj): Obj {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest;
}

interface Snapshot {
  readonly rv: number;
  readonly items: Obj[];
  readonly at: number;
}

/** The in-memory API: objects, the resourceVersion counter, the event history and the watchers. */
class Store {
  rv = 100;
  readonly nodes = new Map<string, Obj>();
  readonly pods = new Map<string, Obj>();
  readonly history: StoredEvent[] = [];
  /** Watches must start at or after this resourceVersion (older events are gone). */
  floor = 100;
  readonly watchers = new Set<Watcher>();
  readonly snapshots = new Map<string, Snapshot>();

  constructor(readonly historyLimit: number) {}

  #record(type: EventType, kind: Kind, obj: Obj): void {
    const ev: StoredEvent = { rv: this.rv, type, kind, obj };
    this.history.push(ev);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.floor = dropped[dropped.length - 1]!.rv;
    }
    for (const w of this.watchers) deliver(w, ev);
  }

  write(kind: Kind, key: string, obj: Obj, type: EventType): Obj {
    const map = kind === "nodes" ? this.nodes : this.pods;
    this.rv++;
    if (type === "DELETED") {
      // the final state carries the deletion's resourceVersion, as the real server sends it
      const gone = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } };
      map.delete(key);
      this.#record(type, kind, gone);
      return gone;
    }
    const stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } };
    map.set(key, stored);
    this.#record(type, kind, stored);
    return stored;
  }

  compact(): number {
    // a write elsewhere (as in a real cluster, where revisions are shared): then drop it all
    this.rv++;
    this.history.length = 0;
    this.floor = this.rv;
    this.snapshots.clear();
    for (const w of [...this.watchers]) w.end();
    return this.rv;
  }
}

function eventLine(w: Watcher, ev: StoredEvent): string {
  if (w.table) {
    const t = tableOf(ev.kind, [ev.obj], w.table, String(ev.rv), !w.columnsSent);
    w.columnsSent = true;
    return JSON.stringify({ type: ev.type, object: t });
  }
  ev.line ??= JSON.stringify({ type: ev.type, object: withKind(ev.kind, ev.obj) });
  return ev.line;
}

function deliver(w: Watcher, ev: StoredEvent): void {
  if (w.kind !== ev.kind) return;
  if (w.namespace !== null && ev.obj.metadata?.namespace !== w.namespace) return;
  if (!matches(ev.obj, w.selector)) return;
  w.send(eventLine(w, ev));
}

function bookmarkLine(kind: Kind, rv: number, extra: Obj = {}): string {
  return JSON.stringify({
    type: "BOOKMARK",
    object: {
      kind: kind === "nodes" ? "Node" : "Pod",
      apiVersion: "v1",
      metadata: { resourceVersion: String(rv), ...extra },
    },
  });
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-cache, private", ...headers },
  });

const errorResponse = (e: ApiError) => json(statusObject(e.code, e.reason, e.message, e.details), e.code);

function discovery(): Record<string, Obj> {
  const res = (name: string, kind: string, namespaced: boolean, verbs: string[], shortNames?: string[]) => ({
    name,
    singularName: name.includes("/") ? "" : kind.toLowerCase(),
    namespaced,
    kind,
    verbs,
    ...(shortNames ? { shortNames } : {}),
    storageVersionHash: "",
  });
  const all = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
  return {
    "/version": {
      major: "1",
      minor: "32",
      gitVersion: STAND_IN_VERSION,
      gitCommit: "0000000000000000000000000000000000000000",
      gitTreeState: "clean",
      buildDate: "2026-01-01T00:00:00Z",
      goVersion: "go1.23.4",
      compiler: "gc",
      platform: "linux/amd64",
    },
    "/api": {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "" }],
    },
    "/api/v1": {
      kind: "APIResourceList",
      groupVersion: "v1",
      resources: [
        res("nodes", "Node", false, all, ["no"]),
        res("nodes/status", "Node", false, ["get", "patch", "update"]),
        res("pods", "Pod", true, all, ["po"]),
        res("pods/status", "Pod", true, ["get", "patch", "update"]),
      ],
    },
    "/apis": { kind: "APIGroupList", apiVersion: "v1", groups: [] },
  };
}

/** A running stand-in, in this process. */
export class KubeApiServer implements KubeApiControl {
  readonly store: Store;
  readonly #o: KubeApiServerOptions;
  #server: ReturnType<typeof Bun.serve> | null = null;
  #port: number;
  #bookmarkTimer: ReturnType<typeof setInterval>;
  readonly #requests: RequestRecord[] = [];
  readonly #discovery = discovery();
  #snapshotSeq = 0;

  private constructor(o: KubeApiServerOptions) {
    this.#o = o;
    this.#port = o.port ?? 0;
    this.store = new Store(o.historyLimit ?? 1000);
    this.#bookmarkTimer = setInterval(() => this.#sendBookmarks(), o.bookmarkIntervalMs ?? 5000);
  }

  static async start(o: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(o);
    s.#listen();
    return s;
  }

  get url(): string {
    return `${this.#o.tls ? "https" : "http"}://${this.#o.host ?? "127.0.0.1"}:${this.#port}`;
  }

  #listen(): void {
    const tls = this.#o.tls;
    this.#server = Bun.serve({
      hostname: this.#o.host ?? "127.0.0.1",
      port: this.#port,
      // watches stay open for minutes
      idleTimeout: 0,
      ...(tls
        ? {
            tls: {
              cert: readFileSync(tls.certFile, "utf8"),
              key: readFileSync(tls.keyFile, "utf8"),
              ...(tls.clientCaFile
                ? { ca: readFileSync(tls.clientCaFile, "utf8"), requestCert: true, rejectUnauthorized: true }
                : {}),
            },
          }
        : {}),
      fetch: (req) => this.#handle(req),
    });
    this.#port = this.#server.port ?? this.#port;
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    let res: Response;
    try {
      res = await this.#route(req, url);
    } catch (e) {
      if (e instanceof ApiError) res = errorResponse(e);
      else if (e instanceof PatchError)
        res = errorResponse(new ApiError(e.code, e.code === 422 ? "Invalid" : "BadRequest", e.message));
      else res = errorResponse(new ApiError(500, "InternalError", `stand-in: ${(e as Error).message}`));
    }
    if (this.#requests.length < 20_000)
      this.#requests.push({
        method: req.method,
        path: url.pathname,
        query: url.search,
        contentType: req.headers.get("content-type"),
        status: res.status,
        userAgent: req.headers.get("user-agent"),
      });
    return res;
  }

  async #route(req: Request, url: URL): Promise<Response> {
    const token = this.#o.token;
    if (token !== undefined && req.headers.get("authorization") !== `Bearer ${token}`)
      throw new ApiError(401, "Unauthorized", "Unauthorized");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const q = url.searchParams;
    const doc = this.#discovery[path];
    if (doc) {
      if (req.method !== "GET") throw methodNotAllowed(req.method);
      return json(doc);
    }
    if (path === "/healthz" || path === "/livez" || path === "/readyz")
      return new Response("ok", { headers: { "Content-Type": "text/plain" } });

    const watchPath = /^\/api\/v1\/watch\/nodes(?:\/([^/]+))?$/.exec(path);
    const nodePath = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(path);
    const podPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/.exec(path);
    const isWatch = q.get("watch") === "1" || q.get("watch") === "true";
    if (watchPath) {
      const m = watchPath;
      const sel = m[1] ? `metadata.name=${decodeURIComponent(m[1])}` : q.get("fieldSelector");
      return this.#watch(req, "nodes", null, sel, q);
    }
    if (path === "/api/v1/nodes") {
      if (req.method === "GET")
        return isWatch
          ? this.#watch(req, "nodes", null, q.get("fieldSelector"), q)
          : this.#list(req, "nodes", null, q);
      if (req.method === "POST")
        return json(withKind("nodes", this.#create("nodes", await bodyJson(req), null)), 201);
      throw methodNotAllowed(req.method);
    }
    if (nodePath) {
      const m = nodePath;
      const name = decodeURIComponent(m[1]!);
      const sub = m[2] ? "status" : undefined;
      const cur = this.store.nodes.get(name);
      switch (req.method) {
        case "GET":
          if (!cur) throw notFound("nodes", name);
          return this.#one(req, "nodes", cur, q);
        case "PATCH": {
          const type = PATCH_TYPES[(req.headers.get("content-type") ?? "").split(";")[0]!.trim()];
          if (!type) throw unsupportedMedia(req.headers.get("content-type"));
          return json(withKind("nodes", this.#patch(name, await bodyJson(req), type, sub, true)));
        }
        case "PUT":
          return json(withKind("nodes", this.#update(name, await bodyJson(req), sub)));
        case "DELETE":
          if (sub) throw methodNotAllowed(req.method);
          if (!cur) throw notFound("nodes", name);
          this.store.write("nodes", name, cur, "DELETED");
          return json(statusObject(200, "", "", { name, kind: "nodes", uid: cur.metadata.uid }));
        default:
          throw methodNotAllowed(req.method);
      }
    }
    if (path === "/api/v1/pods") {
      if (req.method !== "GET") throw methodNotAllowed(req.method);
      return isWatch
        ? this.#watch(req, "pods", null, q.get("fieldSelector"), q)
        : this.#list(req, "pods", null, q);
    }
    if (podPath) {
      const m = podPath;
      const ns = decodeURIComponent(m[1]!);
      if (!m[2]) {
        if (req.method === "GET")
          return isWatch
            ? this.#watch(req, "pods", ns, q.get("fieldSelector"), q)
            : this.#list(req, "pods", ns, q);
        if (req.method === "POST")
          return json(withKind("pods", this.#create("pods", await bodyJson(req), ns)), 201);
        throw methodNotAllowed(req.method);
      }
      const name = decodeURIComponent(m[2]);
      const cur = this.store.pods.get(`${ns}/${name}`);
      if (!cur) throw notFound("pods", name);
      if (req.method === "GET") return this.#one(req, "pods", cur, q);
      if (req.method === "DELETE") {
        this.store.write("pods", `${ns}/${name}`, cur, "DELETED");
        return json(withKind("pods", cur));
      }
      throw methodNotAllowed(req.method);
    }
    throw new ApiError(404, "NotFound", "the server could not find the requested resource", {});
  }

  #one(req: Request, kind: Kind, o: Obj, q: URLSearchParams): Response {
    const mode = tableMode(req.headers.get("accept"), q.get("includeObject"));
    if (mode) return json(tableOf(kind, [o], mode, o.metadata.resourceVersion, true));
    return json(withKind(kind, o));
  }

  #list(req: Request, kind: Kind, ns: string | null, q: URLSearchParams): Response {
    const selector = parseSelector(q.get("fieldSelector"), q.get("labelSelector"), kind);
    const limit = Number(q.get("limit") ?? 0);
    const cont = q.get("continue");
    let items: Obj[];
    let rv: number;
    let offset = 0;
    let snapId: string;
    if (cont) {
      let tok: { rv: number; id: string; offset: number };
      try {
        tok = JSON.parse(Buffer.from(cont, "base64url").toString("utf8"));
      } catch {
        throw new ApiError(400, "BadRequest", "continue key is not valid: illegal base64 data");
      }
      const snap = this.store.snapshots.get(tok.id);
      if (!snap || tok.rv < this.store.floor)
        throw new ApiError(
          410,
          "Expired",
          "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        );
      items = snap.items;
      rv = snap.rv;
      offset = tok.offset;
      snapId = tok.id;
    } else {
      const map = kind === "nodes" ? this.store.nodes : this.store.pods;
      items = [...map.values()]
        .filter((o) => (ns === null || o.metadata.namespace === ns) && matches(o, selector))
        .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
      rv = this.store.rv;
      snapId = String(++this.#snapshotSeq);
    }
    const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
    const rest = items.length - offset - page.length;
    const meta: Obj = { resourceVersion: String(rv) };
    if (rest > 0) {
      if (!this.store.snapshots.has(snapId)) {
        for (const [id, s] of this.store.snapshots)
          if (Date.now() - s.at > 300_000 || this.store.snapshots.size > 32) this.store.snapshots.delete(id);
        this.store.snapshots.set(snapId, { rv, items, at: Date.now() });
      }
      meta.continue = Buffer.from(JSON.stringify({ rv, id: snapId, offset: offset + page.length })).toString(
        "base64url",
      );
      meta.remainingItemCount = rest;
    } else this.store.snapshots.delete(snapId);
    const mode = tableMode(req.headers.get("accept"), q.get("includeObject"));
    if (mode)
      return json(
        tableOf(kind, page, mode, String(rv), true, meta.continue ? { continue: meta.continue } : {}),
      );
    // list items carry no kind/apiVersion, as the real server's typed lists
    return new Response(
      `{"kind":"${kind === "nodes" ? "NodeList" : "PodList"}","apiVersion":"v1","metadata":${JSON.stringify(meta)},"items":[${page.map((o) => JSON.stringify(o)).join(",")}]}`,
      { headers: { "Content-Type": "application/json", "Cache-Control": "no-cache, private" } },
    );
  }

  #watch(req: Request, kind: Kind, ns: string | null, fieldSel: string | null, q: URLSearchParams): Response {
    const selector = parseSelector(fieldSel, q.get("labelSelector"), kind);
    const rvText = q.get("resourceVersion") ?? "";
    const bookmarks = q.get("allowWatchBookmarks") === "true" || q.get("allowWatchBookmarks") === "1";
    const initialEvents = q.get("sendInitialEvents") === "true";
    const timeout = Number(q.get("timeoutSeconds") ?? 0);
    const store = this.store;
    const fromRv = rvText === "" || rvText === "0" ? null : Number(rvText);
    if (fromRv !== null && !Number.isSafeInteger(fromRv))
      throw new ApiError(400, "BadRequest", `invalid resource version: ${rvText}`);
    const enc = new TextEncoder();
    let watcher: Watcher | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start: (ctrl) => {
        let open = true;
        const end = () => {
          if (!open) return;
          open = false;
          if (timer) clearTimeout(timer);
          if (watcher) store.watchers.delete(watcher);
          try {
            ctrl.close();
          } catch {}
        };
        const send = (line: string) => {
          if (!open) return;
          try {
            ctrl.enqueue(enc.encode(`${line}\n`));
          } catch {
            end();
          }
        };
        if (fromRv !== null && fromRv < store.floor) {
          const oldest = store.history[0]?.rv ?? store.rv;
          send(
            JSON.stringify({
              type: "ERROR",
              object: statusObject(410, "Expired", `too old resource version: ${fromRv} (${oldest})`),
            }),
          );
          end();
          return;
        }
        const w: Watcher = {
          kind,
          namespace: ns,
          selector,
          bookmarks,
          table: tableMode(req.headers.get("accept"), q.get("includeObject")),
          columnsSent: false,
          send,
          end,
        };
        watcher = w;
        if (fromRv === null || initialEvents) {
          const map = kind === "nodes" ? store.nodes : store.pods;
          for (const o of map.values())
            if ((ns === null || o.metadata.namespace === ns) && matches(o, selector))
              send(eventLine(w, { rv: Number(o.metadata.resourceVersion), type: "ADDED", kind, obj: o }));
          if (initialEvents && bookmarks)
            send(bookmarkLine(kind, store.rv, { annotations: { "k8s.io/initial-events-end": "true" } }));
        } else {
          for (const ev of store.history) if (ev.rv > fromRv) deliver(w, ev);
        }
        store.watchers.add(w);
        if (timeout > 0) timer = setTimeout(end, timeout * 1000);
      },
      cancel: () => {
        if (timer) clearTimeout(timer);
        if (watcher) store.watchers.delete(watcher);
      },
    });
    return new Response(stream, {
      headers: { "Content-Type": "application/json", "Cache-Control": "no-cache, private" },
    });
  }

  #create(kind: Kind, body: Json, ns: string | null): Obj {
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new ApiError(400, "BadRequest", "the body of the request is not a JSON object");
    const o = withoutKind(structuredClone(body as Obj));
    const name = o.metadata?.name;
    if (typeof name !== "string" || !DNS1123_SUBDOMAIN.test(name))
      throw new ApiError(
        422,
        "Invalid",
        `${kind === "nodes" ? "Node" : "Pod"} "${name ?? ""}" is invalid: metadata.name: Invalid value: ${JSON.stringify(name ?? "")}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    if (kind === "pods") {
      const space = o.metadata.namespace ?? ns;
      if (ns !== null && space !== ns)
        throw new ApiError(
          400,
          "BadRequest",
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      o.metadata.namespace = space;
    }
    const key = kind === "nodes" ? name : `${o.metadata.namespace}/${name}`;
    const map = kind === "nodes" ? this.store.nodes : this.store.pods;
    if (map.has(key))
      throw new ApiError(409, "AlreadyExists", `${kind} "${name}" already exists`, { name, kind });
    validateMeta(kind, o);
    o.metadata = {
      ...o.metadata,
      uid: randomUUID(),
      creationTimestamp: `${new Date().toISOString().slice(0, 19)}Z`,
    };
    delete o.metadata.resourceVersion;
    return this.store.write(kind, key, o, "ADDED");
  }

  #update(name: string, body: Json, sub: "status" | undefined): Obj {
    const cur = this.store.nodes.get(name);
    if (!cur) throw notFound("nodes", name);
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new ApiError(400, "BadRequest", "the body of the request is not a JSON object");
    return this.#commit(name, cur, withoutKind(structuredClone(body as Obj)), sub, true);
  }

  #patch(name: string, patch: Json, type: PatchType, sub: "status" | undefined, validate: boolean): Obj {
    const cur = this.store.nodes.get(name);
    if (!cur) throw notFound("nodes", name);
    const base = withKind("nodes", cur) as Json;
    const next =
      type === "json"
        ? jsonPatch(base, patch)
        : type === "merge"
          ? mergePatch(base, patch)
          : strategicMergePatch(base, patch, NODE_PATCH_SCHEMA);
    if (typeof next !== "object" || next === null || Array.isArray(next))
      throw new ApiError(422, "Invalid", `Node "${name}" is invalid: the patched object is not an object`);
    return this.#commit(name, cur, withoutKind(next as Obj), sub, validate);
  }

  /** The registry strategy of a Node update: what each endpoint may change, preconditions, no-op detection. */
  #commit(name: string, cur: Obj, next: Obj, sub: "status" | undefined, validate: boolean): Obj {
    if (next.metadata?.name !== name)
      throw new ApiError(
        400,
        "BadRequest",
        `the name of the object (${next.metadata?.name}) does not match the name on the URL (${name})`,
      );
    const pre = next.metadata.resourceVersion;
    if (pre !== undefined && pre !== "" && pre !== cur.metadata.resourceVersion)
      throw new ApiError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on nodes "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name, kind: "nodes" },
      );
    // immutable metadata
    next.metadata = {
      ...next.metadata,
      uid: cur.metadata.uid,
      creationTimestamp: cur.metadata.creationTimestamp,
      resourceVersion: cur.metadata.resourceVersion,
    };
    if (sub === "status") next.spec = cur.spec;
    else next.status = cur.status;
    if (validate) {
      validateMeta("nodes", next);
      const was = cur.spec?.podCIDR ?? "";
      const now = next.spec?.podCIDR ?? "";
      if (was !== "" && now !== was)
        throw new ApiError(
          422,
          "Invalid",
          `Node "${name}" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid`,
        );
    }
    if (JSON.stringify(next) === JSON.stringify(cur)) return cur;
    return this.store.write("nodes", name, next, "MODIFIED");
  }

  #sendBookmarks(): void {
    for (const w of this.store.watchers) if (w.bookmarks) w.send(bookmarkLine(w.kind, this.store.rv));
  }

  // --- the control interface -------------------------------------------------------------

  async createNode(node: Obj): Promise<Obj> {
    return withKind("nodes", this.#create("nodes", node, null));
  }

  async createNodes(nodes: Obj[]): Promise<number> {
    for (const n of nodes) this.#create("nodes", n, null);
    return nodes.length;
  }

  async getNode(name: string): Promise<Obj | null> {
    const n = this.store.nodes.get(name);
    return n ? withKind("nodes", n) : null;
  }

  async listNodes(): Promise<Obj[]> {
    return [...this.store.nodes.values()].map((n) => withKind("nodes", n));
  }

  async patchNode(
    name: string,
    patch: Json,
    type: PatchType = "strategic",
    subresource?: "status",
  ): Promise<Obj> {
    return withKind("nodes", this.#patch(name, patch, type, subresource, true));
  }

  async setPodCidr(name: string, cidrs: string[] | null): Promise<Obj> {
    const spec =
      cidrs && cidrs.length > 0 ? { podCIDR: cidrs[0]!, podCIDRs: cidrs } : { podCIDR: null, podCIDRs: null };
    return withKind("nodes", this.#patch(name, { spec }, "merge", undefined, false));
  }

  async annotateNodes(names: string[], annotations: Record<string, string | null>): Promise<number> {
    for (const n of names) this.#patch(n, { metadata: { annotations } }, "merge", undefined, true);
    return names.length;
  }

  async deleteNode(name: string): Promise<boolean> {
    const cur = this.store.nodes.get(name);
    if (!cur) return false;
    this.store.write("nodes", name, cur, "DELETED");
    return true;
  }

  async createPod(namespace: string, name: string, nodeName: string): Promise<Obj> {
    return withKind(
      "pods",
      this.#create(
        "pods",
        { metadata: { name, namespace }, spec: { nodeName, containers: [{ name: "c", image: "x" }] } },
        namespace,
      ),
    );
  }

  async resourceVersion(): Promise<number> {
    return this.store.rv;
  }

  async pause(): Promise<void> {
    for (const w of [...this.store.watchers]) w.end();
    const s = this.#server;
    this.#server = null;
    s?.stop(true);
  }

  async resume(): Promise<void> {
    if (this.#server) return;
    for (let attempt = 0; ; attempt++) {
      try {
        this.#listen();
        return;
      } catch (e) {
        if (attempt >= 50) throw e;
        await Bun.sleep(20);
      }
    }
  }

  async compact(): Promise<number> {
    return this.store.compact();
  }

  async bookmark(): Promise<void> {
    this.#sendBookmarks();
  }

  async watcherCount(): Promise<number> {
    return this.store.watchers.size;
  }

  async requests(): Promise<RequestRecord[]> {
    return [...this.#requests];
  }

  async clearRequests(): Promise<void> {
    this.#requests.length = 0;
  }

  async close(): Promise<void> {
    clearInterval(this.#bookmarkTimer);
    await this.pause();
  }
}

function validateMeta(kind: Kind, o: Obj): void {
  const what = `${kind === "nodes" ? "Node" : "Pod"} "${o.metadata?.name}" is invalid`;
  for (const field of ["annotations", "labels"] as const) {
    const m = o.metadata?.[field];
    if (m === undefined || m === null) continue;
    if (typeof m !== "object" || Array.isArray(m))
      throw new ApiError(400, "BadRequest", `${what}: metadata.${field} must be an object of strings`);
    for (const [k, val] of Object.entries(m))
      if (typeof val !== "string")
        throw new ApiError(
          400,
          "BadRequest",
          `${what}: metadata.${field}[${JSON.stringify(k)}] must be a string`,
        );
  }
}

async function bodyJson(req: Request): Promise<Json> {
  const text = await req.text();
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw new ApiError(400, "BadRequest", `the body of the request is not valid JSON: ${text.slice(0, 80)}`);
  }
}

const methodNotAllowed = (m: string) =>
  new ApiError(
    405,
    "MethodNotAllowed",
    `the server does not allow this method on the requested resource (${m})`,
  );

const unsupportedMedia = (ct: string | null) =>
  new ApiError(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format (${ct ?? "none"}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
  );

/** Starts a stand-in in this process. */
export function startKubeApiServer(o: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  return KubeApiServer.start(o);
}

// --- the stand-in as its own process, controlled over a Unix socket ---------------------------

const CONTROL_METHODS = [
  "createNode",
  "createNodes",
  "getNode",
  "listNodes",
  "patchNode",
  "setPodCidr",
  "annotateNodes",
  "deleteNode",
  "createPod",
  "resourceVersion",
  "pause",
  "resume",
  "compact",
  "bookmark",
  "watcherCount",
  "requests",
  "clearRequests",
] as const;
type ControlMethod = (typeof CONTROL_METHODS)[number];

/** The client side of a stand-in running as another process. */
export class RemoteKubeApi implements KubeApiControl {
  constructor(
    readonly url: string,
    readonly socket: string,
    readonly stopProcess: () => Promise<void>,
  ) {}

  async #call<T>(method: ControlMethod, ...args: unknown[]): Promise<T> {
    const r = await fetch("http://stand-in/call", {
      method: "POST",
      unix: this.socket,
      body: JSON.stringify({ method, args }),
    });
    const body = (await r.json()) as {
      result?: T;
      error?: { code: number; reason: string; message: string };
    };
    if (body.error) throw new ApiError(body.error.code, body.error.reason, body.error.message);
    return body.result as T;
  }

  createNode = (node: Obj) => this.#call<Obj>("createNode", node);
  createNodes = (nodes: Obj[]) => this.#call<number>("createNodes", nodes);
  getNode = (name: string) => this.#call<Obj | null>("getNode", name);
  listNodes = () => this.#call<Obj[]>("listNodes");
  patchNode = (name: string, patch: Json, type?: PatchType, sub?: "status") =>
    this.#call<Obj>("patchNode", name, patch, type, sub);
  setPodCidr = (name: string, cidrs: string[] | null) => this.#call<Obj>("setPodCidr", name, cidrs);
  annotateNodes = (names: string[], a: Record<string, string | null>) =>
    this.#call<number>("annotateNodes", names, a);
  deleteNode = (name: string) => this.#call<boolean>("deleteNode", name);
  createPod = (ns: string, name: string, node: string) => this.#call<Obj>("createPod", ns, name, node);
  resourceVersion = () => this.#call<number>("resourceVersion");
  pause = () => this.#call<void>("pause");
  resume = () => this.#call<void>("resume");
  compact = () => this.#call<number>("compact");
  bookmark = () => this.#call<void>("bookmark");
  watcherCount = () => this.#call<number>("watcherCount");
  requests = () => this.#call<RequestRecord[]>("requests");
  clearRequests = () => this.#call<void>("clearRequests");
  close = () => this.stopProcess();
}

export interface NamespacedKubeApiOptions extends Omit<KubeApiServerOptions, "host" | "tls"> {
  /** The stand-in's address on the underlay (a 198.18.0.0/16 address); its namespace is made here. */
  readonly ip: string;
  /** Serve HTTPS with a throwaway CA (test/helpers/certs.ts); its files are in `pki`. */
  readonly tls?: boolean;
  /** With tls: also require a client certificate from that CA. */
  readonly clientCerts?: boolean;
}

export interface NamespacedKubeApi extends KubeApiControl {
  readonly ns: string;
  readonly process: LabProcess;
  readonly pki: import("./certs.ts").TestPki | null;
}

/**
 * Starts the stand-in as its own Bun process inside a new namespace on the lab's
 * underlay (reachable from every node namespace at `ip`); the lab's cleanup removes it.
 */
export async function startKubeApiServerInNamespace(
  lab: Lab,
  o: NamespacedKubeApiOptions,
): Promise<NamespacedKubeApi> {
  const ns = await lab.addHost("kapi", o.ip);
  let pki: import("./certs.ts").TestPki | null = null;
  if (o.tls) pki = await (await import("./certs.ts")).makeTestPki(o.ip);
  const socket = join(lab.dir, `kapi-${ns}.sock`);
  const port = o.port ?? 6443;
  const args = [
    process.execPath,
    import.meta.path,
    "--host",
    o.ip,
    "--port",
    String(port),
    "--control",
    socket,
  ];
  if (pki) args.push("--tls-cert", pki.serverCertFile, "--tls-key", pki.serverKeyFile);
  if (pki && o.clientCerts) args.push("--client-ca", pki.caFile);
  if (o.token) args.push("--token", o.token);
  if (o.historyLimit) args.push("--history", String(o.historyLimit));
  if (o.bookmarkIntervalMs) args.push("--bookmark-ms", String(o.bookmarkIntervalMs));
  const proc = lab.spawn(ns, "kube-apiserver", args);
  const stop = async () => {
    await lab.stop(proc);
    pki?.remove();
  };
  const remote = new RemoteKubeApi(`${pki ? "https" : "http"}://${o.ip}:${port}`, socket, stop);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.proc.exitCode !== null) {
      pki?.remove();
      throw new Error(`stand-in API server exited ${proc.proc.exitCode}: ${await lab.log(proc)}`);
    }
    try {
      if (existsSync(socket)) {
        await remote.resourceVersion();
        break;
      }
    } catch {}
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`stand-in API server did not start: ${await lab.log(proc)}`);
    }
    await Bun.sleep(50);
  }
  return Object.assign(remote, { ns, process: proc, pki });
}

/**
 * A kubeconfig for a namespaced stand-in (`pki` from tls: true): its URL and CA, and the
 * bearer token, as a client in a node namespace uses it. Written to `path`, returned.
 */
export function writeKubeconfig(path: string, api: NamespacedKubeApi, token: string): string {
  if (!api.pki) throw new Error("writeKubeconfig: the stand-in serves plain HTTP (start it with tls: true)");
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
current-context: lab
clusters: [{name: lab, cluster: {server: "${api.url}", certificate-authority: ${api.pki.caFile}}}]
contexts: [{name: lab, context: {cluster: lab, user: agent}}]
users: [{name: agent, user: {token: ${token}}}]
`,
  );
  return path;
}

async function serveControl(api: KubeApiServer, socket: string): Promise<void> {
  rmSync(socket, { force: true });
  Bun.serve({
    unix: socket,
    fetch: async (req) => {
      const { method, args } = (await req.json()) as { method: ControlMethod; args: unknown[] };
      if (!CONTROL_METHODS.includes(method))
        return Response.json({ error: { code: 400, reason: "BadRequest", message: `no method ${method}` } });
      try {
        const fn = api[method] as (...a: unknown[]) => Promise<unknown>;
        return Response.json({ result: (await fn.apply(api, args)) ?? null });
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError(500, "InternalError", (e as Error).message);
        return Response.json({ error: { code: err.code, reason: err.reason, message: err.message } });
      }
    },
  });
}

if (import.meta.main) {
  const { values } = (await import("node:util")).parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      control: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "client-ca": { type: "string" },
      token: { type: "string" },
      history: { type: "string" },
      "bookmark-ms": { type: "string" },
    },
  });
  const api = await startKubeApiServer({
    host: values.host,
    port: Number(values.port),
    ...(values["tls-cert"] && values["tls-key"]
      ? {
          tls: {
            certFile: values["tls-cert"],
            keyFile: values["tls-key"],
            clientCaFile: values["client-ca"],
          },
        }
      : {}),
    ...(values.token ? { token: values.token } : {}),
    ...(values.history ? { historyLimit: Number(values.history) } : {}),
    ...(values["bookmark-ms"] ? { bookmarkIntervalMs: Number(values["bookmark-ms"]) } : {}),
  });
  if (values.control) await serveControl(api, values.control);
  console.log(`stand-in kube-apiserver listening on ${api.url}`);
  const quit = async () => {
    await api.close();
    if (values.control) rmSync(values.control, { force: true });
    process.exit(0);
  };
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
}
