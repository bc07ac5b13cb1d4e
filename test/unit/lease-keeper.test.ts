import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LeaseConflictError, LeaseKeeper } from "../../src/agent/lease-keeper.ts";
import { newMetrics } from "../../src/agent/status.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { NoFreeSubnetError } from "../../src/lease/allocate.ts";
import { encodeLeaseValue } from "../../src/lease/lease.ts";
import { silentLogger } from "../../src/log.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";

const dirs: string[] = [];
const regs: SqliteRegistry[] = [];
afterEach(async () => {
  for (const r of regs.splice(0)) await r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/22", SubnetMin: "198.19.0.0" }));
const attrs = (ip: string) => ({
  publicIp: parseIp4(ip)!,
  backendType: "vxlan",
  vxlan: { VNI: 1, VtepMAC: "0e:00:00:00:00:01" },
});

function keeper(owned: string[] = []) {
  const d = mkdtempSync(join(tmpdir(), "tartan-keeper-"));
  dirs.push(d);
  const registry = SqliteRegistry.open({ path: join(d, "r.db"), log: silentLogger });
  regs.push(registry);
  const k = new LeaseKeeper({
    registry,
    config: cfg,
    attrs: attrs("198.18.0.1"),
    ttlMs: 60_000,
    renewMarginMs: 3_600_000,
    previous: null,
    owned: new Set(owned),
    stateFile: join(d, "node.lease"),
    log: silentLogger,
    metrics: newMetrics(),
    onRegistryError: () => {},
    onRegistryOk: () => {},
    onLease: () => {},
  });
  return { k, registry };
}

describe("lease keeper", () => {
  test("a lease carrying our PublicIP that this node held is reused", async () => {
    const { k, registry } = keeper(["198.19.2.0-24"]);
    await registry.create("198.19.2.0-24", encodeLeaseValue(attrs("198.18.0.1")), 60_000);
    expect((await k.acquire()).key).toBe("198.19.2.0-24");
    k.stop();
  });
  test("a lease carrying our PublicIP that this node has no record of is refused, not shared", async () => {
    const { k, registry } = keeper();
    await registry.create("198.19.2.0-24", encodeLeaseValue(attrs("198.18.0.1")), 60_000);
    const err = await k.acquire().catch((e) => e);
    expect(err).toBeInstanceOf(LeaseConflictError);
    expect((err as Error).message).toContain("lease 198.19.2.0-24 carries our public IP 198.18.0.1");
    expect((err as Error).message).toContain("tartan leases delete 198.19.2.0-24");
    expect((await registry.list()).records).toHaveLength(1);
    k.stop();
  });
  test("while a lost lease is re-acquired, key still names it: our own put is never taken for a remote lease", async () => {
    const { k, registry } = keeper();
    const first = await k.acquire();
    expect(k.key).toBe(first.key);
    await registry.delete(first.key);
    const seen: (string | null)[] = [];
    const create = registry.create.bind(registry);
    registry.create = (...a: Parameters<typeof create>) => {
      seen.push(k.key);
      return create(...a);
    };
    await k.lost();
    expect(seen).toEqual([first.key]);
    expect(k.lease?.key).toBe(first.key);
    expect(k.key).toBe(first.key);
    k.stop();
  });
  test("renewal margin is capped at half the TTL", () => {
    expect(keeper().k.marginMs).toBe(30_000);
  });
  test("a full range is a NoFreeSubnetError naming it", async () => {
    const { k, registry } = keeper();
    for (let i = 0; i < 4; i++)
      await registry.create(`198.19.${i}.0-24`, encodeLeaseValue(attrs(`198.18.1.${i}`)), 60_000);
    const err = await k.acquire().catch((e) => e);
    expect(err).toBeInstanceOf(NoFreeSubnetError);
    expect((err as Error).message).toContain("all 4 /24 subnets");
  });
});
