/**
 * The lease keeper over the registry lease source: what the node remembers decides
 * which lease it takes back (also after a reboot, with only the state file left), a
 * lease carrying our PublicIP that the node has no record of is refused, a lease taken
 * by another node is never stolen, the state file follows every acquisition, renewals
 * happen, and a lost lease is acquired again (its key named meanwhile). On the
 * in-memory registry and on sqlite.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { LeaseKeeper } from "../../src/agent/lease-keeper.ts";
import { LeaseSync } from "../../src/agent/lease-sync.ts";
import { SourceHealth } from "../../src/agent/source-health.ts";
import { parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import type { SubnetEnv } from "../../src/config/subnet-env.ts";
import { NoFreeSubnetError } from "../../src/lease/allocate.ts";
import { encodeLeaseValue, type Lease } from "../../src/lease/lease.ts";
import { nodeMemory, readStateFile, stateFilePath } from "../../src/lease/memory.ts";
import { createRegistryLeaseSource, LeaseConflictError } from "../../src/lease/registry-source.ts";
import { silentLogger } from "../../src/log.ts";
import type { Registry } from "../../src/registry/registry.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import { newMetrics } from "../../src/status/status.ts";
import { MemoryRegistry, outage } from "../helpers/memory-registry.ts";
import { until } from "../helpers/netns.ts";
import { RecordingBackend } from "../helpers/recording-backend.ts";

const dirs: string[] = [];
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// 256 subnets: a test that expects one particular subnet cannot pass by a lucky random pick
const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16", SubnetMin: "198.19.0.0" }));
const small = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/22", SubnetMin: "198.19.0.0" }));
const MAC = "0e:00:00:00:00:01";
const attrs = (ip: string) => ({
  publicIp: parseIp4(ip)!,
  backendType: "vxlan",
  vxlan: { VNI: 1, VtepMAC: MAC },
});
const ME = "198.18.0.1";

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "tartan-keeper-"));
  dirs.push(d);
  return d;
}

const REGISTRIES: Record<string, (dir: string) => Registry> = {
  memory: () => new MemoryRegistry(),
  sqlite: (dir) => SqliteRegistry.open({ path: join(dir, "r.db"), log: silentLogger, pollMs: 10 }),
};

interface KeeperSetup {
  registry: Registry;
  stateFile: string;
  env?: SubnetEnv | null;
  ttlMs?: number;
  renewMarginMs?: number;
  onLease?: (l: Lease) => void;
  config?: typeof cfg;
}

function keeper(s: KeeperSetup) {
  const metrics = newMetrics();
  const health = new SourceHealth(s.registry.description, silentLogger, metrics);
  const source = createRegistryLeaseSource({
    registry: s.registry,
    ttlMs: s.ttlMs ?? 60_000,
    netConfigPath: null,
    stateFile: s.stateFile,
    log: silentLogger,
  });
  const config = s.config ?? cfg;
  const k = new LeaseKeeper({
    source,
    config,
    attrs: attrs(ME),
    ttlMs: s.ttlMs ?? 60_000,
    renewMarginMs: s.renewMarginMs ?? 3_600_000,
    memory: nodeMemory(s.env ?? null, readStateFile(s.stateFile), config.network),
    stateFile: s.stateFile,
    log: silentLogger,
    metrics,
    health,
    onLease: s.onLease ?? (() => {}),
  });
  closers.push(() => k.stop());
  return { k, source, metrics, health };
}

const envFor = (subnet: string): SubnetEnv => ({
  network: cfg.network,
  subnet: parseCidr(subnet)!,
  mtu: 1450,
  ipMasq: false,
});

for (const [kind, open] of Object.entries(REGISTRIES))
  describe(`lease keeper (${kind})`, () => {
    const setup = () => {
      const dir = tmp();
      const registry = open(dir);
      closers.push(() => registry.close());
      return { registry, stateFile: stateFilePath(join(dir, "state"), "node-1") };
    };

    test("a new lease is recorded in the state file", async () => {
      const { registry, stateFile } = setup();
      const { k } = keeper({ registry, stateFile });
      const lease = await k.acquire();
      expect(readFileSync(stateFile, "utf8")).toBe(`${lease.key}\n`);
      expect((await registry.list()).records.map((r) => r.key)).toEqual([lease.key]);
    });

    test("reboot: subnet.env gone, the state file names our live lease: the same lease is taken back", async () => {
      const { registry, stateFile } = setup();
      const before = keeper({ registry, stateFile, env: null });
      const held = await before.k.acquire();
      before.k.stop();
      // after the reboot /run is empty (no subnet.env); the state file survived
      const { k } = keeper({ registry, stateFile, env: null });
      expect((await k.acquire()).key).toBe(held.key);
      expect((await registry.list()).records.map((r) => r.key)).toEqual([held.key]);
    });

    test("reboot after our lease expired: the state file's subnet is taken again while it is free", async () => {
      const { registry, stateFile } = setup();
      const { k } = keeper({ registry, stateFile: writeState(stateFile, "198.19.3.0-24") });
      expect((await k.acquire()).key).toBe("198.19.3.0-24");
    });

    test("the state file's subnet, expired and taken by another node since, is not stolen", async () => {
      const { registry, stateFile } = setup();
      const theirs = encodeLeaseValue(attrs("198.18.0.7"));
      await registry.create("198.19.3.0-24", theirs, 60_000);
      const { k } = keeper({ registry, stateFile: writeState(stateFile, "198.19.3.0-24") });
      const lease = await k.acquire();
      expect(lease.key).not.toBe("198.19.3.0-24");
      const records = (await registry.list()).records;
      expect(records.find((r) => r.key === "198.19.3.0-24")?.value).toBe(theirs);
      // the state file now names what we hold
      expect(readStateFile(stateFile)).toBe(lease.key);
    });

    test("a lease carrying our PublicIP that this node has no record of is refused, not shared", async () => {
      const { registry, stateFile } = setup();
      await registry.create("198.19.2.0-24", encodeLeaseValue(attrs(ME)), 60_000);
      const { k } = keeper({ registry, stateFile });
      const err = await k.acquire().catch((e) => e);
      expect(err).toBeInstanceOf(LeaseConflictError);
      expect((err as Error).message).toContain("lease 198.19.2.0-24 carries our public IP 198.18.0.1");
      expect((err as Error).message).toContain(stateFile);
      expect((err as Error).message).toContain("tartan leases delete 198.19.2.0-24");
      expect((await registry.list()).records).toHaveLength(1);
      expect(existsSync(stateFile)).toBe(false);
    });

    test("a state file naming another subnet does not make a lease with our PublicIP ours", async () => {
      const { registry, stateFile } = setup();
      await registry.create("198.19.2.0-24", encodeLeaseValue(attrs(ME)), 60_000);
      const { k } = keeper({ registry, stateFile: writeState(stateFile, "198.19.1.0-24") });
      expect(await k.acquire().catch((e) => e)).toBeInstanceOf(LeaseConflictError);
    });

    test("subnet.env's subnet wins over the state file (it is what pods use now)", async () => {
      const { registry, stateFile } = setup();
      const { k } = keeper({
        registry,
        stateFile: writeState(stateFile, "198.19.1.0-24"),
        env: envFor("198.19.2.0/24"),
      });
      expect((await k.acquire()).key).toBe("198.19.2.0-24");
      expect(readStateFile(stateFile)).toBe("198.19.2.0-24");
    });

    test("a full range is a NoFreeSubnetError naming it", async () => {
      const { registry, stateFile } = setup();
      for (let i = 0; i < 4; i++)
        await registry.create(`198.19.${i}.0-24`, encodeLeaseValue(attrs(`198.18.1.${i}`)), 60_000);
      const err = await keeper({ registry, stateFile, config: small })
        .k.acquire()
        .catch((e) => e);
      expect(err).toBeInstanceOf(NoFreeSubnetError);
      expect((err as Error).message).toContain("all 4 /24 subnets");
    });

    test("the lease is renewed before it expires", async () => {
      const { registry, stateFile } = setup();
      const { k, metrics } = keeper({ registry, stateFile, ttlMs: 2000, renewMarginMs: 1500 });
      const first = await k.acquire();
      await until(() => metrics.renewals >= 1, "a renewal", 10_000);
      expect(k.lease?.key).toBe(first.key);
      expect(k.lease!.expiresAt!).toBeGreaterThan(first.expiresAt!);
    });

    test("our lease deleted: the watch reports it and the same subnet is acquired again and recorded", async () => {
      const { registry, stateFile } = setup();
      const relet: Lease[] = [];
      const { k, source, metrics, health } = keeper({ registry, stateFile, onLease: (l) => relet.push(l) });
      const lease = await k.acquire();
      const sync = new LeaseSync({
        source,
        config: cfg,
        backend: new RecordingBackend(),
        log: silentLogger,
        metrics,
        health,
        ownLease: () => k.lease,
        onOwnLeaseGone: () => void k.lost(),
      });
      closers.push(() => sync.stop());
      await sync.start();
      rmSync(stateFile);
      await registry.delete(lease.key);
      await until(() => relet.length === 1, "the lease to be acquired again", 10_000);
      expect(relet[0]!.key).toBe(lease.key);
      expect(k.lease?.key).toBe(lease.key);
      expect(metrics.acquisitions).toBe(2);
      expect(readStateFile(stateFile)).toBe(lease.key);
      expect((await registry.list()).records.map((r) => r.key)).toEqual([lease.key]);
    });

    test("while a lost lease is re-acquired, key still names it: our own put is never taken for a remote lease", async () => {
      const { registry, stateFile } = setup();
      const { k, source } = keeper({ registry, stateFile });
      const first = await k.acquire();
      expect(k.key).toBe(first.key);
      await registry.delete(first.key);
      const seen: { lease: string | null; key: string | null }[] = [];
      const acquire = source.acquire.bind(source);
      source.acquire = (...a: Parameters<typeof acquire>) => {
        seen.push({ lease: k.lease?.key ?? null, key: k.key });
        return acquire(...a);
      };
      await k.lost();
      // no lease held in between, yet the key named it throughout
      expect(seen).toEqual([{ lease: null, key: first.key }]);
      expect(k.lease?.key).toBe(first.key);
      expect(k.key).toBe(first.key);
    });
  });

describe("lease keeper (transient failures)", () => {
  test("acquisition retries while the registry fails, reporting it degraded, then ok", async () => {
    const registry = new MemoryRegistry();
    const stateFile = stateFilePath(tmp(), "n");
    const { k, health, metrics } = keeper({ registry, stateFile });
    registry.fail(outage());
    const got = k.acquire();
    await until(() => health.state === "degraded", "the failure to be reported");
    registry.fail(null);
    const lease = await got;
    expect(health.state).toBe("ok");
    expect(metrics.registryErrors).toBeGreaterThanOrEqual(1);
    expect(readStateFile(stateFile)).toBe(lease.key);
  });

  test("renewal margin is capped at half the TTL", () => {
    const { k } = keeper({ registry: new MemoryRegistry(), stateFile: stateFilePath(tmp(), "n") });
    expect(k.marginMs).toBe(30_000);
  });
});

/** Writes a state file naming `key` (as a previous run would have) and returns its path. */
function writeState(path: string, key: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${key}\n`);
  return path;
}
