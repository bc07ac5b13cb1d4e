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
 * compaction (etcd-watch.ts). etcd is spoken to through its JSON gateway
 * (etcd-gateway.ts; gRPC only where the gateway cannot work: etcd-grpc.ts). Each call
 * requires a member with a leader, goes to the next member when one fails, and a lease
 * write has a short deadline per attempt (etcd-calls.ts). Nothing is contacted until
 * the first call, so an agent can start while etcd is down.
 */
import type { Logger } from "../log.ts";
import { LeaseExpiryCache, NO_LEASE } from "./etcd-expiry.ts";
import {
  b64,
  type EtcdTransport,
  type GatewayHeader,
  type GatewayKv,
  type RangeResponse,
  type TxnResponse,
  unb64,
} from "./etcd-gateway.ts";
import { gatewayOrGrpc } from "./etcd-grpc.ts";
import { type EtcdSecurityOptions, etcdSecurity, redactEndpoint } from "./etcd-tls.ts";
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

const rev = (h: GatewayHeader | undefined) => Number(h?.revision ?? 0);

/** A raw key as the gateway sends it, and the key after it (to page from). */
const after = (b64Key: string) => b64(Buffer.concat([Buffer.from(b64Key, "base64"), Buffer.from([0])]));

class EtcdRegistry implements Registry {
  readonly description: string;
  readonly #etcd: EtcdTransport;
  readonly #log: Logger;
  /** base64 of the config key, of the subnets prefix and of its range end */
  readonly #configKey: string;
  readonly #subnetsKey: string;
  readonly #subnetsEnd: string;
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
    const prefix = opts.prefix.replace(/\/+$/, "");
    this.#configKey = b64(`${prefix}/config`);
    this.#subnetsPrefix = `${prefix}/subnets/`;
    this.#subnetsKey = b64(this.#subnetsPrefix);
    this.#subnetsEnd = b64(prefixEnd(Buffer.from(this.#subnetsPrefix)));
    this.#pageSize = opts.pageSize ?? 1000;
    const security = etcdSecurity(opts);
    this.#etcd = gatewayOrGrpc(
      {
        endpoints: opts.endpoints,
        ...security,
        requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
        leaseTtlMs: (id) => this.#writing.get(id),
      },
      this.#log,
    );
    this.#expiry = new LeaseExpiryCache(async (id) => {
      const r = await this.#etcd.call<{ TTL?: string }>("/v3/lease/timetolive", { ID: id });
      const ttl = Number(r.TTL ?? -1);
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

  /** The full key of a subnet, base64. */
  #fullKey(key: string): string {
    if (key.length === 0 || key.includes("/"))
      throw new RegistryError(`etcd: ${JSON.stringify(key)} is not a subnet key`);
    return b64(this.#subnetsPrefix + key);
  }

  /** The subnet key of a raw key (the prefix cut off). */
  #subnetOf(kv: GatewayKv): string {
    return unb64(kv.key).slice(this.#subnetsPrefix.length);
  }

  #record(kv: GatewayKv): RegistryRecord {
    return {
      key: this.#subnetOf(kv),
      value: unb64(kv.value),
      expiresAt: this.#expiry.expiryOf(kv.lease ?? NO_LEASE),
      revision: Number(kv.mod_revision ?? 0),
    };
  }

  /** Grants an etcd lease for `ttlMs` (whole seconds, at least 1); "0" and null expiry for a reservation. */
  async #grant(ttlMs: number | null): Promise<{ id: string; expiresAt: number | null }> {
    if (ttlMs === null) return { id: NO_LEASE, expiresAt: null };
    const t0 = Date.now();
    const g = await this.#etcd.call<{ ID?: string; TTL?: string; error?: string }>("/v3/lease/grant", {
      TTL: Math.max(1, Math.ceil(ttlMs / 1000)),
      ID: 0,
    });
    if (g.error) throw new Error(`lease grant refused: ${g.error}`);
    if (!g.ID) throw new Error("lease grant returned no lease id");
    // etcd counts from when it granted, which is after t0: this expiry is never late
    const expiresAt = t0 + Number(g.TTL) * 1000;
    this.#expiry.remember(g.ID, expiresAt);
    this.#writing.set(String(g.ID), ttlMs);
    return { id: g.ID, expiresAt };
  }

  async #revokeQuietly(id: string): Promise<void> {
    if (id === NO_LEASE) return;
    try {
      await this.#etcd.call("/v3/lease/revoke", { ID: id });
    } catch (err) {
      this.#log.warn("could not revoke an unused etcd lease; it will expire by itself", { leaseId: id, err });
    }
  }

  getConfig(): Promise<string | null> {
    return this.#op("read the network config", async () => {
      const r = await this.#etcd.call<RangeResponse>("/v3/kv/range", { key: this.#configKey });
      const kv = r.kvs?.[0];
      return kv ? unb64(kv.value) : null;
    });
  }

  setConfig(json: string): Promise<void> {
    return this.#op("write the network config", async () => {
      await this.#etcd.call("/v3/kv/put", { key: this.#configKey, value: b64(json) });
    });
  }

  list(): Promise<{ records: RegistryRecord[]; revision: number }> {
    return this.#op("list the subnets", async () => {
      // page through at one revision, so the whole list is one consistent snapshot
      const kvs: GatewayKv[] = [];
      let revision = 0;
      let from = this.#subnetsKey;
      for (;;) {
        const r = await this.#etcd.call<RangeResponse>("/v3/kv/range", {
          key: from,
          range_end: this.#subnetsEnd,
          limit: this.#pageSize,
          revision,
        });
        if (revision === 0) revision = rev(r.header);
        const page = r.kvs ?? [];
        for (const kv of page) kvs.push(kv);
        const last = page[page.length - 1];
        if (!r.more || !last) break;
        from = after(last.key);
      }
      const ids = new Set(kvs.map((kv) => kv.lease ?? NO_LEASE));
      await this.#expiry.resolve(ids);
      this.#expiry.retainOnly(ids);
      return { records: kvs.map((kv) => this.#record(kv)), revision };
    });
  }

  create(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#op(`create lease ${key}`, async () => {
      const k = this.#fullKey(key);
      const lease = await this.#grant(ttlMs);
      let r: TxnResponse;
      try {
        r = await this.#etcd.call<TxnResponse>("/v3/kv/txn", {
          compare: [{ key: k, target: "CREATE", result: "EQUAL", create_revision: 0 }],
          success: [{ request_put: { key: k, value: b64(value), lease: lease.id } }],
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
        const existing = r.responses?.[0]?.response_range?.kvs?.[0];
        // a retried transaction whose first attempt did commit: the key is ours
        const ours =
          existing && lease.id !== NO_LEASE && existing.lease === lease.id && unb64(existing.value) === value;
        if (!ours) {
          await this.#revokeQuietly(lease.id);
          return null;
        }
        return { key, value, expiresAt: lease.expiresAt, revision: Number(existing.mod_revision ?? 0) };
      }
      return { key, value, expiresAt: lease.expiresAt, revision: rev(r.header) };
    });
  }

  renew(key: string, value: string, ttlMs: number | null): Promise<RegistryRecord | null> {
    return this.#op(`renew lease ${key}`, async () => {
      const k = this.#fullKey(key);
      const lease = await this.#grant(ttlMs);
      let r: TxnResponse;
      try {
        r = await this.#etcd.call<TxnResponse>("/v3/kv/txn", {
          compare: [{ key: k, target: "CREATE", result: "GREATER", create_revision: 0 }],
          success: [{ request_put: { key: k, value: b64(value), lease: lease.id } }],
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
      const r = await this.#etcd.call<{ deleted?: string }>("/v3/kv/deleterange", {
        key: this.#fullKey(key),
      });
      return Number(r.deleted ?? 0) > 0;
    });
  }

  async #toEvents(evs: readonly { type?: string; kv: GatewayKv }[]): Promise<WatchEvent[]> {
    await this.#expiry.resolve(evs.filter((e) => e.type !== "DELETE").map((e) => e.kv.lease ?? NO_LEASE));
    return evs.map((e): WatchEvent => {
      if (e.type === "DELETE")
        return { type: "delete", key: this.#subnetOf(e.kv), revision: Number(e.kv.mod_revision ?? 0) };
      return { type: "put", record: this.#record(e.kv) };
    });
  }

  watch(fromRevision: number, cb: WatchCallbacks): WatchHandle {
    if (this.#closed) throw new RegistryError(`${this.description}: watch: the registry is closed`);
    const inner = startEtcdWatch(
      {
        open: (create) => this.#etcd.watch(create),
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
    this.#etcd.close();
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
