/**
 * The pure parts of the etcd registry, without etcd: the lease-expiry cache (how many
 * TTL lookups a list costs), endpoint redaction, and the TLS/auth option checks.
 */
import { describe, expect, test } from "bun:test";
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
