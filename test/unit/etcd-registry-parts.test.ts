/**
 * The pure parts of the etcd registry, without etcd: the lease-expiry cache (how many
 * TTL lookups a list costs), endpoint redaction, the TLS/auth option checks, and how
 * calls are made on a cluster (deadlines of lease writes, the hasleader metadata).
 */
import { describe, expect, test } from "bun:test";
import type { CallContext } from "etcd3";
import { attemptMs, requireLeader } from "../../src/registry/etcd-calls.ts";
import { LeaseExpiryCache, NO_LEASE } from "../../src/registry/etcd-expiry.ts";
import { etcdSecurity, redactEndpoint } from "../../src/registry/etcd-tls.ts";
import { RegistryError } from "../../src/registry/registry.ts";

describe("LeaseExpiryCache", () => {
  const make = (ttls: Record<string, number | null>, now = { t: 1_000_000 }) => {
    const asked: string[] = [];
    const cache = new LeaseExpiryCache(
      async (id) => {
        asked.push(id);
        return ttls[id] ?? null;
      },
      4,
      () => now.t,
    );
    return { cache, asked, now };
  };

  test("asks once per lease id, never for 'no lease', and answers from the TTL", async () => {
    const { cache, asked } = make({ a: 10, b: 20 });
    await cache.resolve(["a", "b", "a", NO_LEASE]);
    expect(asked.sort()).toEqual(["a", "b"]);
    expect(cache.expiryOf("a")).toBe(1_000_000 + 10_000);
    expect(cache.expiryOf(NO_LEASE)).toBeNull();
    await cache.resolve(["a", "b"]);
    expect(asked.length).toBe(2);
  });

  test("10,000 leases cost 10,000 lookups once, then none", async () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `L${i}`);
    const ttls = Object.fromEntries(ids.map((id) => [id, 86_400]));
    const { cache, asked } = make(ttls);
    await cache.resolve(ids);
    expect(asked.length).toBe(10_000);
    await cache.resolve(ids);
    expect(asked.length).toBe(10_000);
  });

  test("a remembered (own) lease is not looked up; a gone lease expires now; a stale entry is asked again", async () => {
    const { cache, asked, now } = make({ b: 5 });
    cache.remember("own", 2_000_000);
    await cache.resolve(["own", "gone"]);
    expect(asked).toEqual(["gone"]);
    expect(cache.expiryOf("gone")).toBe(1_000_000);
    await cache.resolve(["b"]);
    now.t += 6_000; // b's expiry has passed while its key is still listed
    await cache.resolve(["b", "own"]);
    expect(asked.filter((x) => x === "b").length).toBe(2);
  });

  test("retainOnly forgets leases no longer in use", async () => {
    const { cache } = make({ a: 10, b: 10 });
    await cache.resolve(["a", "b"]);
    cache.retainOnly(new Set(["a"]));
    expect(cache.size).toBe(1);
  });
});

describe("etcd endpoints and security options", () => {
  test("redacts user info from endpoints", () => {
    expect(redactEndpoint("https://user:secret@10.0.0.1:2379")).toBe("https://10.0.0.1:2379");
    expect(redactEndpoint("user:secret@10.0.0.1:2379")).toBe("10.0.0.1:2379");
    expect(redactEndpoint("http://127.0.0.1:2379")).toBe("http://127.0.0.1:2379");
  });

  test("certfile and keyfile go together; a password needs a username", () => {
    expect(() => etcdSecurity({ certFile: "/x.pem" })).toThrow(RegistryError);
    expect(() => etcdSecurity({ password: "pw" })).toThrow(/username/);
    expect(etcdSecurity({ username: "u", password: "pw" }).auth).toEqual({ username: "u", password: "pw" });
    expect(etcdSecurity({})).toEqual({});
  });

  test("a missing file is named", () => {
    expect(() => etcdSecurity({ caFile: "/nonexistent/ca.pem" })).toThrow(/\/nonexistent\/ca\.pem/);
  });
});

describe("grpc-js log lines", () => {
  test("go to our logger (errors at warn), never straight to stderr", async () => {
    const { experimental, logVerbosity } = await import("@grpc/grpc-js");
    const { createEtcdRegistry } = await import("../../src/registry/etcd.ts");
    const { createLogger } = await import("../../src/log.ts");
    const lines: string[] = [];
    const log = createLogger({ level: "debug", write: (l) => lines.push(l) });
    // opening the registry contacts nothing, but takes over grpc's logger
    const reg = await createEtcdRegistry({
      endpoints: ["http://127.0.0.1:1"],
      prefix: "/coreos.com/network",
      log,
    });
    const stderr = console.error;
    const direct: unknown[] = [];
    console.error = (...a: unknown[]) => direct.push(a);
    try {
      experimental.log(
        logVerbosity.ERROR,
        "Connection to dns:127.0.0.1:1 rejected by server because of excess pings. Increasing ping interval to 20000 ms",
      );
    } finally {
      console.error = stderr;
      await reg.close();
    }
    expect(direct).toEqual([]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /level=warn msg="etcd client \(grpc\)" registry=etcd:http:\/\/127\.0\.0\.1:1 detail=/,
    );
    expect(lines[0]).toContain("rejected by server because of excess pings");
  });
});

describe("etcd calls on a cluster of members", () => {
  const grant = (ttlS: number) =>
    ({ service: "Lease", method: "leaseGrant", isStream: false, params: { TTL: ttlS } }) as const;
  const putOn = (lease: string): CallContext => ({
    service: "KV",
    method: "txn",
    isStream: false,
    params: { success: [{ request_put: { key: Buffer.from("k"), value: Buffer.from("v"), lease } }] },
  });
  const none = () => undefined;

  test("a lease write's attempt gets a sixth of the TTL, between 1 s and the request timeout", () => {
    expect(attemptMs(grant(6), 10_000, none)).toBe(1000);
    expect(attemptMs(grant(3), 10_000, none)).toBe(1000);
    expect(attemptMs(grant(24), 10_000, none)).toBe(4000);
    expect(attemptMs(grant(86_400), 10_000, none)).toBe(10_000);
  });

  test("the put on a granted lease takes that lease's TTL; other requests the request timeout", () => {
    const ttls = new Map([["42", 12_000]]);
    expect(attemptMs(putOn("42"), 10_000, (id) => ttls.get(id))).toBe(2000);
    // a lease not being written (or no lease): the usual deadline
    expect(attemptMs(putOn("43"), 10_000, (id) => ttls.get(id))).toBe(10_000);
    expect(
      attemptMs(
        { service: "KV", method: "range", isStream: false, params: { key: Buffer.from("k") } },
        10_000,
        none,
      ),
    ).toBe(10_000);
  });

  test("every call carries etcd's hasleader metadata (a member without a leader refuses at once)", async () => {
    const { Metadata } = await import("@grpc/grpc-js");
    const sent: InstanceType<typeof Metadata>[] = [];
    const next = { start: (md: InstanceType<typeof Metadata>) => sent.push(md) };
    const call = requireLeader({} as never, () => next as never);
    call.start(new Metadata(), {});
    expect(sent.map((m) => m.get("hasleader"))).toEqual([["true"]]);
  });
});
