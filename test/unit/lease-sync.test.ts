/**
 * LeaseSync over an in-memory registry and a recording backend: the first list before
 * the watch, nothing applied before that list (an adopted datapath must not be pruned),
 * puts, deletes and resyncs as diffs, bad records skipped and counted once, failed
 * applies retried, our own lease gone reported, reprogramAll, and the removal grace
 * (a vanished remote lease stays programmed a while; taken by another node, it is
 * updated at once; our own key is never programmed as a remote, also while re-acquired).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { LeaseSync } from "../../src/agent/lease-sync.ts";
import { SourceHealth } from "../../src/agent/source-health.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { decodeLeaseRecord, encodeLeaseValue, type Lease } from "../../src/lease/lease.ts";
import { createRegistryLeaseSource } from "../../src/lease/registry-source.ts";
import type { LeaseSource } from "../../src/lease/source.ts";
import { silentLogger } from "../../src/log.ts";
import { newMetrics } from "../../src/status/status.ts";
import { MemoryRegistry, outage } from "../helpers/memory-registry.ts";
import { until } from "../helpers/netns.ts";
import { RecordingBackend } from "../helpers/recording-backend.ts";

const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }));
const value = (ip: string, mac = "0e:00:00:00:00:02") =>
  encodeLeaseValue({ publicIp: parseIp4(ip)!, backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: mac } });

const OWN = "198.19.1.0-24";
const syncs: LeaseSync[] = [];
afterEach(() => {
  for (const s of syncs.splice(0)) s.stop();
});

function setup(
  opts: {
    own?: () => Lease | null;
    ownKey?: () => string | null;
    source?: LeaseSource;
    /** The removal grace; 0 (removals at once) unless a test is about the grace. */
    graceMs?: number;
  } = {},
) {
  const registry = new MemoryRegistry();
  const backend = new RecordingBackend();
  const metrics = newMetrics();
  const health = new SourceHealth(registry.description, silentLogger, metrics);
  const gone: string[] = [];
  const source =
    opts.source ??
    createRegistryLeaseSource({
      registry,
      ttlMs: 60_000,
      netConfigPath: null,
      stateFile: "/nonexistent",
      log: silentLogger,
    });
  let own: Lease | null = null;
  const sync = new LeaseSync({
    source,
    config: cfg,
    backend,
    log: silentLogger,
    metrics,
    health,
    ownLease: opts.own ?? (() => own),
    ownKey: opts.ownKey,
    onOwnLeaseGone: () => gone.push("gone"),
    retryMs: 20,
    removalGraceMs: opts.graceMs ?? 0,
  });
  syncs.push(sync);
  const setOwn = (l: Lease | null) => {
    own = l;
  };
  return { registry, backend, metrics, health, sync, gone, setOwn };
}

const applied = (b: RecordingBackend) => [...b.programmed.keys()].sort();

describe("lease sync", () => {
  test("lists first, then watches from the list's revision; start resolves once the list is programmed", async () => {
    const { registry, backend, sync } = setup();
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    registry.put("198.19.3.0-24", value("198.18.0.3"));
    await sync.start();
    expect(registry.calls.filter((c) => c === "list" || c === "watch")).toEqual(["list", "watch"]);
    expect(sync.revision).toBe(2);
    expect(sync.synced).toBe(true);
    expect(backend.applies).toEqual([{ add: ["198.19.2.0-24", "198.19.3.0-24"], update: [], remove: [] }]);
  });

  test("nothing is applied before the first full list, even when asked to reconcile or the list fails", async () => {
    const { registry, backend, sync, health } = setup();
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    let open: () => void = () => {};
    registry.listGate = new Promise((r) => {
      open = r;
    });
    registry.fail(outage());
    const started = sync.start();
    await sync.reconcile();
    await until(() => health.state === "degraded", "the failed list to be reported");
    // an adopted datapath would be pruned by an apply of an empty desired set: none happened
    expect(backend.applies).toEqual([]);
    registry.fail(null);
    open();
    await started;
    expect(backend.applies).toEqual([{ add: ["198.19.2.0-24"], update: [], remove: [] }]);
    expect(health.state).toBe("ok");
  });

  test("an empty list is still applied once (the backend prunes what it adopted)", async () => {
    const { backend, sync } = setup();
    await sync.start();
    expect(backend.applies).toEqual([{ add: [], update: [], remove: [] }]);
  });

  test("puts, updates and deletes become diffs; our own lease is never programmed as a remote", async () => {
    const { registry, backend, sync, setOwn } = setup();
    const own = decodeLeaseRecord(registry.put(OWN, value("198.18.0.1")), cfg);
    if (!own.ok) throw new Error(own.reason);
    setOwn(own.lease);
    await sync.start();
    expect(sync.leases.has(OWN)).toBe(true);
    expect(backend.applies).toEqual([{ add: [], update: [], remove: [] }]);
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    await until(() => backend.programmed.has("198.19.2.0-24"), "the put to be programmed");
    registry.put("198.19.2.0-24", value("198.18.0.2", "0e:00:00:00:00:22"));
    await until(
      () => backend.programmed.get("198.19.2.0-24")?.attrs.vxlan?.VtepMAC === "0e:00:00:00:00:22",
      "the update to be programmed",
    );
    expect(backend.applies.at(-1)).toEqual({ add: [], update: ["198.19.2.0-24"], remove: [] });
    await registry.delete("198.19.2.0-24");
    await until(() => !backend.programmed.has("198.19.2.0-24"), "the delete to be unprogrammed");
    expect(backend.applies.at(-1)).toEqual({ add: [], update: [], remove: ["198.19.2.0-24"] });
    expect(sync.revision).toBe(registry.revision);
  });

  test("a resync replaces the whole set: what it lacks is removed, what it adds is programmed", async () => {
    const { registry, backend, sync } = setup();
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    registry.put("198.19.3.0-24", value("198.18.0.3"));
    await sync.start();
    // changes the watch "missed" (compaction): only a resync tells
    registry.records.delete("198.19.2.0-24");
    registry.records.set("198.19.4.0-24", {
      key: "198.19.4.0-24",
      value: value("198.18.0.4"),
      expiresAt: null,
      revision: ++registry.revision,
    });
    registry.resync();
    await until(() => backend.programmed.has("198.19.4.0-24"), "the resync to be programmed");
    expect(applied(backend)).toEqual(["198.19.3.0-24", "198.19.4.0-24"]);
    expect(backend.applies.at(-1)).toEqual({ add: ["198.19.4.0-24"], update: [], remove: ["198.19.2.0-24"] });
    expect(sync.revision).toBe(registry.revision);
  });

  test("a bad record is skipped and counted once, however often it is seen; fixed, it is programmed", async () => {
    const { registry, backend, sync, metrics } = setup();
    registry.put("198.19.5.0-24", "not json");
    await sync.start();
    expect(metrics.invalidRecords).toBe(1);
    registry.put("198.19.5.0-24", "not json");
    registry.resync();
    registry.put("198.19.6.0-24", value("198.18.0.6"));
    await until(() => backend.programmed.has("198.19.6.0-24"), "a later good record");
    expect(metrics.invalidRecords).toBe(1);
    expect(sync.leases.has("198.19.5.0-24")).toBe(false);
    registry.put("198.19.5.0-24", '{"PublicIP":7}');
    await until(() => metrics.invalidRecords === 2, "a different bad value to count again");
    registry.put("198.19.5.0-24", value("198.18.0.5"));
    await until(() => backend.programmed.has("198.19.5.0-24"), "the fixed record");
    expect(applied(backend)).toEqual(["198.19.5.0-24", "198.19.6.0-24"]);
  });

  test("a record the source marks invalid is skipped with the source's reason", async () => {
    const registry = new MemoryRegistry();
    const base = createRegistryLeaseSource({
      registry,
      ttlMs: 60_000,
      netConfigPath: null,
      stateFile: "/nonexistent",
      log: silentLogger,
    });
    const source: LeaseSource = {
      ...base,
      list: async () => ({
        records: [
          { key: "node/n7", value: "", expiresAt: null, revision: 1, invalid: "node n7 has no podCIDR" },
        ],
        revision: 1,
      }),
    };
    const lines: string[] = [];
    const { backend, metrics } = setup({ source });
    const log = {
      ...silentLogger,
      warn: (m: string, f?: Record<string, unknown>) => lines.push(`${m} ${f?.reason}`),
    };
    const sync = new LeaseSync({
      source,
      config: cfg,
      backend,
      log,
      metrics,
      health: new SourceHealth("x", silentLogger, metrics),
      ownLease: () => null,
      onOwnLeaseGone: () => {},
    });
    syncs.push(sync);
    await sync.start();
    expect(metrics.invalidRecords).toBe(1);
    expect(lines).toEqual(["skipping invalid registry record node n7 has no podCIDR"]);
    expect(sync.leases.size).toBe(0);
  });

  test("a failed apply is counted and retried until it succeeds", async () => {
    const { registry, backend, sync, metrics } = setup();
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    backend.failNext = 2;
    await sync.start();
    expect(backend.failures).toBe(2);
    expect(metrics.applyErrors).toBe(2);
    expect(applied(backend)).toEqual(["198.19.2.0-24"]);
    expect(sync.synced).toBe(true);
  });

  test("our own lease deleted, or rewritten with another PublicIP, is reported; other changes are not", async () => {
    const { registry, sync, gone, setOwn } = setup();
    registry.put(OWN, value("198.18.0.1"));
    await sync.start();
    setOwn(sync.leases.get(OWN)!);
    registry.put(OWN, value("198.18.0.1")); // our own renewal
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    await until(() => sync.leases.has("198.19.2.0-24"), "the other put");
    expect(gone).toEqual([]);
    await registry.delete(OWN);
    await until(() => gone.length === 1, "the loss to be reported");
    registry.put(OWN, value("198.18.0.9"));
    await until(() => gone.length === 2, "a foreign owner to be reported");
  });

  test("reprogramAll programs every remote lease again (the datapath was rebuilt empty)", async () => {
    const { registry, backend, sync } = setup();
    registry.put("198.19.2.0-24", value("198.18.0.2"));
    registry.put("198.19.3.0-24", value("198.18.0.3"));
    await sync.start();
    backend.programmed.clear();
    await sync.reprogramAll();
    expect(backend.applies.at(-1)).toEqual({
      add: ["198.19.2.0-24", "198.19.3.0-24"],
      update: [],
      remove: [],
    });
    expect(applied(backend)).toEqual(["198.19.2.0-24", "198.19.3.0-24"]);
  });

  test("stop ends the watch and a start still waiting for its list", async () => {
    const { registry, sync } = setup();
    registry.fail(outage());
    const started = sync.start();
    await until(() => registry.calls.includes("list"), "the first list attempt");
    sync.stop();
    await started;
    expect(registry.watchers).toBe(0);
  });
});

describe("lease sync: the removal grace", () => {
  const PEER = "198.19.2.0-24";
  /** The watch has delivered everything written so far, and what it asked for is applied. */
  const settled = async (registry: MemoryRegistry, sync: LeaseSync) => {
    await until(() => sync.revision === registry.revision, "the watch to catch up");
    await sync.reconcile();
  };
  const removals = (b: RecordingBackend, key: string) => b.applies.filter((a) => a.remove.includes(key));

  test("a vanished remote lease stays programmed within the grace", async () => {
    const { registry, backend, sync } = setup({ graceMs: 60_000 });
    registry.put(PEER, value("198.18.0.2"));
    await sync.start();
    await registry.delete(PEER);
    await settled(registry, sync);
    expect(sync.leases.has(PEER)).toBe(false);
    expect(backend.programmed.has(PEER)).toBe(true);
    expect(removals(backend, PEER)).toEqual([]);
  });

  test("a vanished remote lease is removed once its grace ends", async () => {
    const { registry, backend, sync } = setup({ graceMs: 200 });
    registry.put(PEER, value("198.18.0.2"));
    await sync.start();
    await registry.delete(PEER);
    // nothing else happens: only the grace's own timer can remove it
    await until(() => !backend.programmed.has(PEER), "the removal once the grace is over");
    expect(removals(backend, PEER)).toEqual([{ add: [], update: [], remove: [PEER] }]);
  });

  test("a lease that re-appears with the same attributes is never removed, nor re-applied", async () => {
    const { registry, backend, sync } = setup({ graceMs: 60_000 });
    registry.put(PEER, value("198.18.0.2"));
    await sync.start();
    const applies = backend.applies.length;
    await registry.delete(PEER);
    registry.put(PEER, value("198.18.0.2"));
    await settled(registry, sync);
    expect(sync.leases.has(PEER)).toBe(true);
    expect(backend.applies.length).toBe(applies);
    expect(backend.programmed.has(PEER)).toBe(true);
  });

  test("a vanished lease taken by another node is updated at once, not after the grace", async () => {
    const { registry, backend, sync } = setup({ graceMs: 60_000 });
    registry.put(PEER, value("198.18.0.2"));
    await sync.start();
    await registry.delete(PEER);
    await settled(registry, sync);
    registry.put(PEER, value("198.18.0.7", "0e:00:00:00:00:07"));
    await until(
      () => backend.programmed.get(PEER)?.attrs.publicIp === parseIp4("198.18.0.7"),
      "the new owner to be programmed",
    );
    expect(backend.applies.at(-1)).toEqual({ add: [], update: [PEER], remove: [] });
    expect(removals(backend, PEER)).toEqual([]);
  });

  test("a programmed remote lease that becomes ours is removed at once", async () => {
    const { registry, backend, sync, setOwn } = setup({ graceMs: 60_000 });
    registry.put(OWN, value("198.18.0.2"));
    await sync.start();
    expect(backend.programmed.has(OWN)).toBe(true);
    setOwn(sync.leases.get(OWN)!);
    await sync.reconcile();
    expect(backend.programmed.has(OWN)).toBe(false);
    expect(backend.applies.at(-1)).toEqual({ add: [], update: [], remove: [OWN] });
  });

  test("our key while no lease is held (being re-acquired): the source's put of it is not programmed", async () => {
    const { registry, backend, sync } = setup({ own: () => null, ownKey: () => OWN });
    await sync.start();
    registry.put(OWN, value("198.18.0.1"));
    registry.put(PEER, value("198.18.0.2"));
    await until(() => backend.programmed.has(PEER), "the other put");
    await settled(registry, sync);
    expect(sync.leases.has(OWN)).toBe(true);
    expect(backend.programmed.has(OWN)).toBe(false);
  });
});
