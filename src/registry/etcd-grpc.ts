/**
 * The fallback transport for the one setup where etcd's JSON gateway cannot work: etcd
 * requires client certificates (`--client-cert-auth`) and its server certificate lacks
 * the clientAuth usage. The gateway inside etcd dials etcd's own gRPC port presenting
 * that server certificate as its client certificate, and etcd refuses it, so every
 * gateway call fails with "transport: … handshake / client preface". There the registry
 * speaks gRPC through the etcd3 package, loaded only then (it costs ~22–24 MiB idle and
 * 3.5× the CPU of a 10,000-lease list: bench/CONTROL-PLANE.md), behind the same interface: calls and
 * watch responses in the gateway's JSON shapes (base64 keys and values, decimal strings).
 *
 * The same rules per call as the gateway's (etcd-calls.ts): the "hasleader" metadata, a
 * deadline per attempt (a sixth of the TTL for a lease write), a failed member skipped
 * for a second (etcd-grpc-calls.ts, loaded with this transport only).
 *
 * Bun workaround kept from the gRPC-only client: grpc-js passes the endpoint's host to
 * `tls.connect` as `servername` (SNI). For an IP endpoint Node ignores it (RFC 6066
 * forbids IP addresses in SNI), Bun throws; `ignoreIpServerNames` makes Bun behave as
 * Node. The certificate is still verified against the IP.
 */
import { isIP } from "node:net";
import tls from "node:tls";
import type { Logger } from "../log.ts";
import { attemptMs } from "./etcd-calls.ts";
import {
  EtcdCallError,
  EtcdGateway,
  type EtcdTransport,
  type GatewayOptions,
  type GatewayWatch,
  type WatchResponse,
} from "./etcd-gateway.ts";

/**
 * Does this error say the gateway cannot reach etcd's own gRPC server? Only with a client
 * certificate configured (the one setup where that is permanent): etcd answered over HTTP
 * with gRPC's "unavailable" from the gateway's own connection (grpc-go's words: "transport:
 * … handshake", "connection closed", …), not from etcd's server ("etcdserver: no leader").
 */
export function gatewayCannotReachGrpc(e: unknown, o: GatewayOptions): boolean {
  return (
    o.tls?.cert !== undefined &&
    e instanceof EtcdCallError &&
    e.code === UNAVAILABLE &&
    !e.message.startsWith("etcdserver:")
  );
}

/** gRPC's status code "unavailable". */
const UNAVAILABLE = 14;

const BYTES = new Set(["key", "range_end", "value"]);
const ENUMS: Record<string, string> = { CREATE: "Create", EQUAL: "Equal", GREATER: "Greater", LESS: "Less" };

/** A request in the gateway's shape → etcd3's (Buffers for bytes, etcd3's enum spelling). */
function toGrpc(v: unknown, field = ""): unknown {
  if (typeof v === "string" && BYTES.has(field)) return Buffer.from(v, "base64");
  if (typeof v === "string" && (field === "target" || field === "result")) return ENUMS[v] ?? v;
  if (Array.isArray(v)) return v.map((x) => toGrpc(x));
  if (typeof v === "object" && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toGrpc(x, k)]));
  return v;
}

/** A response of etcd3's → the gateway's shape (base64 bytes, no "0" lease, event types in capitals). */
function fromGrpc(v: unknown, field = ""): unknown {
  if (Buffer.isBuffer(v)) return v.toString("base64");
  if (field === "lease" && v === "0") return undefined;
  if (field === "type" && typeof v === "string") return v.toUpperCase();
  if (Array.isArray(v)) return v.map((x) => fromGrpc(x));
  if (typeof v === "object" && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromGrpc(x, k)]));
  return v;
}

let ipServerNamesIgnored = false;

/** Makes `tls.connect` ignore an IP `servername` as Node does (see the module comment). Idempotent. */
function ignoreIpServerNames(): void {
  if (ipServerNamesIgnored || !process.versions.bun) return;
  ipServerNamesIgnored = true;
  const connect = tls.connect;
  const patched = (...args: unknown[]) => {
    const fixed = args.map((a) => {
      if (typeof a !== "object" || a === null || !("servername" in a)) return a;
      const { servername, ...rest } = a as { servername?: unknown };
      return typeof servername === "string" && isIP(servername) !== 0 ? rest : a;
    });
    return (connect as (...a: unknown[]) => tls.TLSSocket)(...fixed);
  };
  // grpc-js reaches tls.connect through require("tls"): the same object as this default export
  (tls as { connect: unknown }).connect = patched;
}

/** The gRPC transport (etcd3), with grpc-js's own log lines routed into `log`. */
export async function grpcTransport(o: GatewayOptions, log: Logger): Promise<EtcdTransport> {
  const [{ Etcd3 }, grpc, { memberBreaker, requireLeader }] = await Promise.all([
    import("etcd3"),
    import("@grpc/grpc-js"),
    import("./etcd-grpc-calls.ts"),
  ]);
  const line =
    (level: "warn" | "debug") =>
    (...parts: unknown[]) =>
      log[level]("etcd client (grpc)", { detail: parts.map(String).join(" ").trim() });
  grpc.setLogger({ error: line("warn"), info: line("debug"), debug: line("debug") });
  const timeout = o.requestTimeoutMs ?? 10_000;
  const ttlOfLease = o.leaseTtlMs ?? (() => undefined);
  const credentials = o.tls
    ? {
        // etcd3's type says Buffer, but grpc-js createSsl takes null for "the system's roots"
        rootCertificate: (o.tls.ca ? Buffer.from(o.tls.ca) : null) as Buffer,
        ...(o.tls.cert && o.tls.key
          ? { certChain: Buffer.from(o.tls.cert), privateKey: Buffer.from(o.tls.key) }
          : {}),
      }
    : undefined;
  if (credentials || o.endpoints.some((e) => e.startsWith("https://"))) ignoreIpServerNames();
  const client = new Etcd3({
    hosts: [...o.endpoints],
    ...(credentials ? { credentials } : {}),
    ...(o.auth ? { auth: o.auth } : {}),
    // etcd3 asks for these per attempt: a retry gets a fresh deadline
    defaultCallOptions: (ctx) => ({
      interceptors: [requireLeader],
      ...(ctx.isStream ? {} : { deadline: Date.now() + attemptMs(ctx, timeout, ttlOfLease) }),
    }),
    faultHandling: { host: () => memberBreaker() },
    grpcOptions: {
      // notice a dead peer on an idle watch stream (etcd permits pings every 5 s)
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      // a catch-up watch batch or a list page of a large cluster can exceed grpc's 4 MiB default
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    },
  });
  const calls: Record<string, (req: never) => Promise<unknown>> = {
    "/v3/kv/range": (r) => client.kv.range(r),
    "/v3/kv/put": (r) => client.kv.put(r),
    "/v3/kv/txn": (r) => client.kv.txn(r),
    "/v3/kv/deleterange": (r) => client.kv.deleteRange(r),
    "/v3/lease/grant": (r) => client.leaseClient.leaseGrant(r),
    "/v3/lease/revoke": (r) => client.leaseClient.leaseRevoke(r),
    "/v3/lease/timetolive": (r) => client.leaseClient.leaseTimeToLive(r),
  };
  return {
    async call<T>(path: string, body: unknown): Promise<T> {
      const fn = calls[path];
      if (!fn) throw new Error(`etcd over gRPC: no call for ${path}`);
      return fromGrpc(await fn(toGrpc(body) as never)) as T;
    },
    async watch(create: Record<string, unknown>): Promise<GatewayWatch> {
      const stream = await client.watchClient.watch();
      const queue: WatchResponse[] = [];
      let ended: Error | null | undefined;
      let wake: (() => void) | null = null;
      const notify = () => {
        wake?.();
        wake = null;
      };
      stream.on("data", (res) => {
        queue.push(fromGrpc(res) as WatchResponse);
        notify();
      });
      stream.on("error", (e) => {
        ended ??= e;
        notify();
      });
      stream.on("end", () => {
        ended ??= null;
        notify();
      });
      stream.write({ create_request: toGrpc(create) as never });
      async function* responses(): AsyncGenerator<WatchResponse> {
        for (;;) {
          const next = queue.shift();
          if (next) {
            yield next;
            continue;
          }
          if (ended !== undefined) {
            if (ended) throw ended;
            return;
          }
          await new Promise<void>((r) => {
            wake = r;
          });
        }
      }
      return {
        responses: responses(),
        cancel: () => {
          ended ??= null;
          notify();
          try {
            stream.cancel();
          } catch {
            // already closed
          }
        },
      };
    },
    close: () => client.close(),
  };
}

/**
 * The gateway, until a call shows it cannot reach etcd's own gRPC server: from then on
 * (and for the call that showed it) gRPC, with a log line saying why.
 */
export function gatewayOrGrpc(o: GatewayOptions, log: Logger): EtcdTransport {
  const gateway = new EtcdGateway(o);
  let grpc: Promise<EtcdTransport> | null = null;
  const use = async <T>(fn: (t: EtcdTransport) => Promise<T>): Promise<T> => {
    if (grpc) return fn(await grpc);
    try {
      return await fn(gateway);
    } catch (e) {
      if (!gatewayCannotReachGrpc(e, o)) throw e;
      if (!grpc) {
        log.info(
          "etcd's JSON gateway cannot reach its own gRPC server (etcd requires client certificates and its server certificate lacks the clientAuth usage); using gRPC",
          { error: (e as Error).message },
        );
        grpc = grpcTransport(o, log);
        grpc.catch(() => {
          grpc = null;
        });
      }
      return fn(await grpc);
    }
  };
  return {
    call: (path, body) => use((t) => t.call(path, body)),
    watch: (create) => use((t) => t.watch(create)),
    close: () => {
      void grpc?.then((t) => t.close()).catch(() => {});
    },
  };
}
