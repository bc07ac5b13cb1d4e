/**
 * The etcd v3 registry: flannel's layout and semantics on a real etcd, so Tartan and
 * flanneld nodes share one cluster.
 *
 *   <prefix>/config                  the network config JSON
 *   <prefix>/subnets/10.244.3.0-24   one lease: flannel's lease JSON, attached to an
 *                                    etcd lease with the lease TTL (no etcd lease =
 *                                    a reservation, which never expires)
 *
 * create = grant an etcd lease, then a transaction "put only if the key was never
 * created"; renew = grant a fresh lease, then "put only if the key exists" (flannel
 * renews by re-granting, never by keep-alive). Expiries come from the leases' TTLs,
 * cached per lease id (etcd-expiry.ts). The watch is resumable and survives outages and
 * compaction (etcd-watch.ts). Each call requires a member with a leader, and a member
 * that fails is skipped for a second only (etcd-calls.ts). Nothing is contacted until
 * the first call, so an agent can start while etcd is down.
 */
import { setLogger as setGrpcLogger } from "@grpc/grpc-js";
import { Etcd3, type IKeyValue, type IRequestOp, type IResponseHeader } from "etcd3";
import type { Logger } from "../log.ts";
import { attemptMs, memberBreaker, requireLeader } from "./etcd-calls.ts";
import { LeaseExpiryCache, NO_LEASE } from "./etcd-expiry.ts";
import { type EtcdSecurityOptions, etcdSecurity, ignoreIpServerNames, redactEndpoint } from "./etcd-tls.ts";
import { startEtcdWatch } from "./etcd-watch.ts";
import {
  type Registry,
  RegistryError,
  type RegistryRecord,
  type WatchCallbacks,
  type WatchEvent,
  type WatchHandle,
} from "./registry.ts";

export interface EtcdRegistryOptions extends EtcdSecurityOptions {
  /** e.g. ["http://127.0.0.1:2379"] (flanneld's `--etcd-endpoints`, split at commas). */
  endpoints: string[];
  /** flanneld's `--etcd-prefix`; a trailing "/" is ignored. */
  prefix: string;
  log: Logger;
  /** Deadline of one request (not of the watch stream); default 10 s. */
  requestTimeoutMs?: number;
  /** Keys per page when listing; default 1000. */
  pageSize?: number;
}

const enc = (s: string) => Buffer.from(s, "utf8");

/** The end of etcd's range for "every key starting with `p`". */
function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const rev = (h: IResponseHeader | undefined) => Number(h?.revision ?? 0);

/**
 * grpc-js (under the etcd3 client) prints its own lines to stderr ("E … rejected by
 * server because of excess pings"): route them into our logger instead — its errors at
 * warn (the registry reports failed operations itself), the rest at debug. The grpc
 * logger is global: the last registry opened in a process owns it.
 */
export function routeGrpcLogs(log: Logger): void {
  const line =
    (level: "warn" | "debug") =>
    (...parts: unknown[]) =>
      log[level]("etcd client (grpc)", { detail: parts.map(String).join(" ").trim() });
  setGrpcLogger({ error: line("warn"), info: line("debug"), debug: line("debug") });
}

class EtcdRegistry implements Registry {
  readonly description: string;
  readonly #client: Etcd3;
  readonly #log: Logger;
  readonly #configKey: Buffer;
  readonly #subnetsKey: Buffer;
  readonly #subnetsEnd: Buffer;
  readonly #subnetsPrefix: string;
  readonly #pageSize: number;
  readonly #expiry: LeaseExpiryCache;
  /** Leases granted for a put not yet done: id → TTL (ms), for the put's deadline (attemptMs). */
  readonly #writing = new Map<string, number>();
  readonly #watches = new Set<WatchHandle>();
  #closed = false;

  constructor(opts: EtcdRegistryOptions) {
    if (opts.endpoints.length === 0) throw new RegistryError("etcd: no endpoints given (--etcd-endpoints)");
    this.description = `etcd:${opts.endpoints.map(redactEndpoint).join(",")}`;
    this.#log = opts.log.with({ registry: this.description });
    routeGrpcLogs(this.#log);
    const prefix = opts.prefix.replace(/\/+$/, "");
    this.#configKey = enc(`${prefix}/config`);
    this.#subnetsPrefix = `${prefix}/subnets/`;
    this.#subnetsKey = enc(this.#subnetsPrefix);
    this.#subnetsEnd = prefixEnd(this.#subnetsKey);
    this.#pageSize = opts.pageSize ?? 1000;
    const timeout = opts.requestTimeoutMs ?? 10_000;
    const security = etcdSecurity(opts);
    if (security.credentials || opts.endpoints.some((e) => e.startsWith("https://"))) ignoreIpServerNames();
    this.#client = new Etcd3({
      hosts: opts.endpoints,
      ...security,
      // etcd3 asks for these per attempt: a retry gets a fresh deadline
      defaultCallOptions: (ctx) => ({
        interceptors: [requireLeader],
        ...(ctx.isStream
          ? {}
          : { deadline: Date.now() + attemptMs(ctx, timeout, (id) => this.#writing.get(id)) }),
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
    this.#expiry = new LeaseExpiryCache(async (id) => {
      const r = await this.#client.leaseClient.leaseTimeToLive({ ID: id });
      const ttl = Number(r.TTL);
      return ttl < 0 ? null : ttl;
    });
  }

  /** Runs one operation, turning any failure into a RegistryError naming the endpoint and the operation. */
  async #op<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new RegistryError(`${this.description}: ${what}: the registry is closed`);
    try {
      return await fn();
    } catch (cause) {
      if (cause instanceof RegistryError) throw cause;
      throw new RegistryError(`${this.description}: ${what}: ${(cause as Error)?.message ?? String(cause)}`, {
        cause,
      });
    }
  }

  #fullKey(key: string): Buffer {
    if (key.length === 0 || key.includes("/"))
      throw new RegistryError(`etcd: ${JSON.stringify(key)} is not a subnet key`);
    return enc(this.#subnetsPrefix + key);
  }

  #record(kv: IKeyValue): RegistryRecord {
    return {
      key: kv.key.toString("utf8").slice(this.#subnetsPrefix.length),
      value: kv.value.toString("utf8"),
      expiresAt: this.#expiry.expiryOf(kv.lease || NO_LEASE),
      revision: Number(kv.mod_revision),
    };
  }

  /** Grants an etcd lease for `ttlMs` (whole seconds, at least 1); "0" and null expiry for a reservation. */
  async #grant(ttlMs: number | null): Promise<{ id: string; expiresAt: number | null }> {
    if (ttlMs === null) return { id: NO_LEASE, expiresAt: null };
    const t0 = Date.now();
    const g = await this.#client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlMs / 1000)), ID: 0 });
    if (g.error) throw new Error(`lease grant refused: ${g.error}`);
    // etcd counts from when it granted, which is after t0: this expiry is never late
    const expiresAt = t0 + Number(g.TTL) * 1000;
    this.#expiry.remember(g.ID, expiresAt);
    this.#writing.set(String(g.ID), ttlMs);
    return { id: g.ID, expiresAt };
  }

  async #revokeQuietly(id: string): Promise<void> {
    if (id === NO_LEASE) return;
    try {
      await this.#client.leaseClient.leaseRevoke({ ID: id });
    } catch (err) {
      this.#log.warn("could not revoke an unused etcd lease; it will expire by itself", { leaseId: id, err });
    }
  }

  getConfig(): Promise<string | null> {
    return this.#op("read the network config", async () => {
      const r = await this.#client.kv.range({ key: this.#configKey });
      const kv = r.kvs[0];
      return kv ? kv.value.toString("utf8") : null;
    });
  }

  setConfig(json: string): Promise<void> {
    return this.#op("write the network config", async () => {
      await this.#client.kv.put({ key: this.#configKey, value: enc(json) });
    });
  }

  list(): Promise<{ records: RegistryRecord[]; revision: number }> {
    return this.#op("list the subnets", async () => {
      // page through at one revision, so the whole list is one consistent snapshot
      const kvs: IKeyValue[] = [];
      let revision = 0;
      let from = this.#subnetsKey;
      for (;;) {
        const r = await this.#client.kv.range({
          key: from,
          range_end: this.#subnetsEnd,
          limit: this.#pageSize,
          revision,
        });
        if (revision === 0) revision = rev(r.header);
        kvs.push(...r.kvs);
        const last = r.kvs[r.kvs.length - 1];
        if (!r.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
      const ids = new Set(kvs.map((kv) => kv.lease || NO_LEASE));
      await this.#expiry.resolve(ids);
      this.#expiry.retainOnly(ids);
      return { records: kvs.map((kv) => this.#record(kv)), revision };
    });
  }

  create(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#op(`create lease ${key}`, async () => {
      const k = this.#fullKey(key);
      const lease = await this.#grant(ttlMs);
      let r: Awaited<ReturnType<Etcd3["kv"]["txn"]>>;
      try {
        r = await this.#client.kv.txn({
          compare: [{ key: k, target: "Create", result: "Equal", create_revision: 0 }],
          success: [{ request_put: { key: k, value: enc(value), lease: lease.id } }],
          failure: [{ request_range: { key: k } }],
        });
      } catch (err) {
        // whether or not the put happened, revoking the lease leaves no key behind
        await this.#revokeQuietly(lease.id);
        throw err;
      } finally {
        this.#writing.delete(String(lease.id));
      }
      if (!r.succeeded) {
        const existing = r.responses[0]?.response_range?.kvs[0];
        // a retried transaction whose first attempt did commit: the key is ours
        const ours =
          existing &&
          lease.id !== NO_LEASE &&
          existing.lease === lease.id &&
          existing.value.toString() === value;
        if (!ours) {
          await this.#revokeQuietly(lease.id);
          return null;
        }
        return { key, value, expiresAt: lease.expiresAt, revision: Number(existing.mod_revision) };
      }
      return { key, value, expiresAt: lease.expiresAt, revision: rev(r.header) };
    });
  }

  renew(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#op(`renew lease ${key}`, async () => {
      const k = this.#fullKey(key);
      const lease = await this.#grant(ttlMs);
      const put: IRequestOp = { request_put: { key: k, value: enc(value), lease: lease.id } };
      let r: Awaited<ReturnType<Etcd3["kv"]["txn"]>>;
      try {
        r = await this.#client.kv.txn({
          compare: [{ key: k, target: "Create", result: "Greater", create_revision: 0 }],
          success: [put],
        });
      } catch (err) {
        await this.#revokeQuietly(lease.id);
        throw err;
      } finally {
        this.#writing.delete(String(lease.id));
      }
      if (!r.succeeded) {
        await this.#revokeQuietly(lease.id);
        return null;
      }
      // the previous etcd lease now holds no key and expires by itself, as with flanneld
      return { key, value, expiresAt: lease.expiresAt, revision: rev(r.header) };
    });
  }

  delete(key: string): Promise<boolean> {
    return this.#op(`delete lease ${key}`, async () => {
      const r = await this.#client.kv.deleteRange({ key: this.#fullKey(key) });
      return Number(r.deleted) > 0;
    });
  }

  async #toEvents(evs: readonly { type: string; kv: IKeyValue }[]): Promise<WatchEvent[]> {
    await this.#expiry.resolve(evs.filter((e) => e.type !== "Delete").map((e) => e.kv.lease || NO_LEASE));
    return evs.map((e): WatchEvent => {
      if (e.type === "Delete") {
        return {
          type: "delete",
          key: e.kv.key.toString("utf8").slice(this.#subnetsPrefix.length),
          revision: Number(e.kv.mod_revision),
        };
      }
      return { type: "put", record: this.#record(e.kv) };
    });
  }

  watch(fromRevision: number, cb: WatchCallbacks): WatchHandle {
    if (this.#closed) throw new RegistryError(`${this.description}: watch: the registry is closed`);
    const inner = startEtcdWatch(
      {
        openStream: () => this.#client.watchClient.watch(),
        key: this.#subnetsKey,
        rangeEnd: this.#subnetsEnd,
        toEvents: (evs) => this.#toEvents(evs),
        relist: () => this.list(),
        where: this.description,
        log: this.#log,
      },
      fromRevision,
      cb,
    );
    const handle: WatchHandle = {
      stop: () => {
        this.#watches.delete(handle);
        inner.stop();
      },
    };
    this.#watches.add(handle);
    return handle;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const w of [...this.#watches]) w.stop();
    this.#closed = true;
    this.#client.close();
  }
}

/**
 * Makes the etcd registry. Reads the TLS files now (a missing file is an error here);
 * does not contact etcd: the first operation does, and fails with a RegistryError
 * naming the endpoints and the operation when etcd is unreachable.
 */
export async function createEtcdRegistry(opts: EtcdRegistryOptions): Promise<Registry> {
  return new EtcdRegistry(opts);
}
