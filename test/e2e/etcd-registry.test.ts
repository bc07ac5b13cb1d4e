/**
 * The etcd registry against a real etcd (Debian's etcd-server, started by the test on
 * loopback): flannel's exact keys and JSON, atomic create, watch of hand-written flannel
 * leases, expiry and renewal, an outage of ~10 s, compaction, raw malformed records.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { DEFAULT_ETCD_PREFIX } from "../../src/config/options.ts";
import { decodeLeaseRecord, encodeLeaseValue } from "../../src/lease/lease.ts";
import { silentLogger } from "../../src/log.ts";
import { createEtcdRegistry } from "../../src/registry/etcd.ts";
import {
  type Registry,
  RegistryError,
  type RegistryRecord,
  type WatchEvent,
  type WatchHandle,
} from "../../src/registry/registry.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { startTcpProxy } from "../helpers/tcp-proxy.ts";

const P = DEFAULT_ETCD_PREFIX;
const CONFIG = '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}';

/** Polls `cond` until it is true; fails with `what` after the deadline. */
async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}

function leaseValue(publicIp: string, mac: string): string {
  return encodeLeaseValue({
    publicIp: parseIp4(publicIp)!,
    backendType: "vxlan",
    vxlan: { VNI: 1, VtepMAC: mac },
  });
}

/** Records what a watch delivers and folds it into the live set it implies. */
class Recorder {
  events: WatchEvent[] = [];
  errors: Error[] = [];
  /** Events that went backwards or repeated a revision (must stay empty). */
  disorder: string[] = [];
  recovered = 0;
  state = new Map<string, RegistryRecord>();
  lastRevision = 0;
  handle: WatchHandle | null = null;

  start(reg: Registry, from: number, initial: RegistryRecord[] = []): this {
    for (const r of initial) this.state.set(r.key, r);
    this.lastRevision = from;
    this.handle = reg.watch(from, {
      onEvents: (evs) => {
        for (const e of evs) {
          this.events.push(e);
          if (e.type === "put") {
            if (e.record.revision <= this.lastRevision)
              this.disorder.push(`put ${e.record.key}@${e.record.revision}`);
            this.lastRevision = e.record.revision;
            this.state.set(e.record.key, e.record);
          } else if (e.type === "delete") {
            if (e.revision <= this.lastRevision) this.disorder.push(`delete ${e.key}@${e.revision}`);
            this.lastRevision = e.revision;
            this.state.delete(e.key);
          } else {
            this.state = new Map(e.records.map((r) => [r.key, r]));
            this.lastRevision = e.revision;
          }
        }
      },
      onError: (err) => this.errors.push(err),
      onRecovered: () => {
        this.recovered++;
      },
    });
    return this;
  }

  puts(key: string) {
    return this.events.filter((e) => e.type === "put" && e.record.key === key);
  }
  deletes(key: string) {
    return this.events.filter((e) => e.type === "delete" && e.key === key);
  }
  stop() {
    this.handle?.stop();
  }
}

/** The live set as values, for comparing a watch's state with a list. */
function valuesOf(records: Iterable<RegistryRecord>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of [...records].sort((a, b) => a.key.localeCompare(b.key))) out[r.key] = r.value;
  return out;
}

let etcd: TestEtcd;
let reg: Registry;
const recorders: Recorder[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  reg = await createEtcdRegistry({ endpoints: [etcd.endpoint], prefix: P, log: silentLogger });
}, 60_000);

afterEach(async () => {
  for (const r of recorders.splice(0)) {
    r.stop();
    expect(r.disorder).toEqual([]);
  }
  if (etcd.pid === null) await etcd.start();
  await etcd.etcdctl(["del", "--prefix", `${P}/`]);
});

afterAll(async () => {
  await reg?.close();
  await etcd?.close();
});

const recorder = () => {
  const r = new Recorder();
  recorders.push(r);
  return r;
};

describe("etcd registry on a real etcd", () => {
  test("uses flannel's exact keys and lease JSON under the prefix", async () => {
    await reg.setConfig(CONFIG);
    expect(await reg.getConfig()).toBe(CONFIG);
    expect((await etcd.etcdctl(["get", "--print-value-only", `${P}/config`])).trim()).toBe(CONFIG);

    const a = leaseValue("198.18.0.1", "0a:58:c6:13:01:00");
    const b = leaseValue("198.18.0.2", "0a:58:c6:13:02:00");
    const ra = await reg.create("198.19.1.0-24", a, 60_000);
    const rb = await reg.create("198.19.2.0-24", b, null);
    expect(ra?.value).toBe(a);
    expect(ra?.expiresAt).toBeGreaterThan(Date.now());
    expect(rb?.expiresAt).toBeNull();

    const shown = (await etcd.etcdctl(["get", "--prefix", `${P}/subnets`])).trim().split("\n");
    expect(shown).toEqual([`${P}/subnets/198.19.1.0-24`, a, `${P}/subnets/198.19.2.0-24`, b]);
    expect(a).toBe(
      '{"PublicIP":"198.18.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}}',
    );

    // the leased key carries an etcd lease; the reservation does not
    const json = JSON.parse(await etcd.etcdctl(["get", "--prefix", `${P}/subnets`, "--write-out=json"])) as {
      kvs: { key: string; lease?: number }[];
    };
    const leaseOf = (k: string) => json.kvs.find((kv) => atob(kv.key) === `${P}/subnets/${k}`)?.lease ?? 0;
    expect(leaseOf("198.19.1.0-24")).not.toBe(0);
    expect(leaseOf("198.19.2.0-24")).toBe(0);

    const { records, revision } = await reg.list();
    expect(revision).toBeGreaterThan(0);
    expect(valuesOf(records)).toEqual({ "198.19.1.0-24": a, "198.19.2.0-24": b });
    expect(records.find((r) => r.key === "198.19.2.0-24")?.expiresAt).toBeNull();
    const leased = records.find((r) => r.key === "198.19.1.0-24")!;
    expect(leased.expiresAt).toBeGreaterThan(Date.now());
    expect(leased.expiresAt).toBeLessThanOrEqual(Date.now() + 61_000);
  });

  test("create is atomic: of 20 concurrent creates of one key exactly one wins", async () => {
    const key = "198.19.7.0-24";
    const values = Array.from({ length: 20 }, (_, i) => leaseValue(`198.18.1.${i + 1}`, "0a:58:c6:13:07:00"));
    const leasesBefore = (await etcd.etcdctl(["lease", "list"])).trim().split("\n").length;
    const results = await Promise.all(values.map((v) => reg.create(key, v, 60_000)));
    const winners = results.filter((r) => r !== null);
    expect(winners.length).toBe(1);
    const stored = (await etcd.etcdctl(["get", "--print-value-only", `${P}/subnets/${key}`])).trim();
    expect(stored).toBe(winners[0]!.value);
    // the losers' etcd leases were revoked: only the winner's remains
    const leasesAfter = (await etcd.etcdctl(["lease", "list"])).trim().split("\n").length;
    expect(leasesAfter).toBe(leasesBefore + 1);
    // and an existing key is never overwritten
    expect(await reg.create(key, values[0]!, null)).toBeNull();
  });

  test("a lease written by hand with etcdctl, as flanneld writes it, is watched; so is its deletion", async () => {
    const { records, revision } = await reg.list();
    const rec = recorder().start(reg, revision, records);
    const key = "198.19.9.0-24";
    const value =
      '{"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"82:2e:0a:3c:5b:11"}}';
    const grant = await etcd.etcdctl(["lease", "grant", "3600"]);
    const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
    expect(id).toBeDefined();
    await etcd.etcdctl(["put", `--lease=${id}`, `${P}/subnets/${key}`, value]);
    await waitFor("the hand-written lease in the watch", () => rec.puts(key).length === 1);
    const put = rec.puts(key)[0]!;
    if (put.type !== "put") throw new Error("not a put");
    expect(put.record.value).toBe(value);
    expect(put.record.expiresAt).toBeGreaterThan(Date.now() + 3_000_000);

    await etcd.etcdctl(["del", `${P}/subnets/${key}`]);
    await waitFor("the deletion in the watch", () => rec.deletes(key).length === 1);
    expect(rec.state.has(key)).toBe(false);
    expect(rec.errors).toEqual([]);
  });

  test("a lease expires with its TTL; a renewed one is kept; renew and delete of a missing key say so", async () => {
    const { revision } = await reg.list();
    const rec = recorder().start(reg, revision);
    const kept = "198.19.10.0-24";
    const short = "198.19.11.0-24";
    const v = leaseValue("198.18.0.10", "0a:58:c6:13:0a:00");
    expect(await reg.create(kept, v, 2000)).not.toBeNull();
    const renewed = await reg.renew(kept, v, 3_600_000);
    expect(renewed?.expiresAt).toBeGreaterThan(Date.now() + 3_000_000);
    // created after the renewal with the same short TTL: when it is gone, the first lease would be too
    expect(await reg.create(short, leaseValue("198.18.0.11", "0a:58:c6:13:0b:00"), 2000)).not.toBeNull();

    await waitFor("the short lease to expire", () => rec.deletes(short).length === 1);
    expect(rec.deletes(kept)).toEqual([]);
    expect(valuesOf((await reg.list()).records)).toEqual({ [kept]: v });

    expect(await reg.renew(short, v, 2000)).toBeNull();
    expect(await reg.delete(kept)).toBe(true);
    expect(await reg.delete(kept)).toBe(false);
    await waitFor("the deletion in the watch", () => rec.deletes(kept).length === 1);
  });

  test("a reservation (no TTL) can be renewed into a reservation and never expires", async () => {
    const key = "198.19.12.0-24";
    const v = leaseValue("198.18.0.12", "0a:58:c6:13:0c:00");
    expect((await reg.create(key, v, null))?.expiresAt).toBeNull();
    const r = await reg.renew(key, v, null);
    expect(r?.expiresAt).toBeNull();
    expect((await reg.list()).records.find((x) => x.key === key)?.expiresAt).toBeNull();
  });

  test("etcd down for ~10 s and back: the watch reports the outage, recovers, and misses nothing", async () => {
    const before = leaseValue("198.18.0.20", "0a:58:c6:13:14:00");
    await reg.create("198.19.20.0-24", before, 3_600_000);
    const { records, revision } = await reg.list();
    const rec = recorder().start(reg, revision, records);
    await reg.create("198.19.24.0-24", before, 3_600_000);
    await waitFor("an event before the outage", () => rec.puts("198.19.24.0-24").length === 1);

    await etcd.stop();
    await waitFor("the watch to report the outage", () => rec.errors.length > 0);
    expect(rec.errors[0]).toBeInstanceOf(RegistryError);
    expect(rec.errors[0]!.message).toContain(etcd.endpoint);
    // operations fail with an error naming the endpoint and the operation
    const failed = await reg.list().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(RegistryError);
    expect((failed as Error).message).toContain(etcd.endpoint);
    expect((failed as Error).message).toContain("list the subnets");
    await Bun.sleep(10_000); // the outage itself, not a synchronisation

    await etcd.start();
    // written at once, while the watch is still backing off: it must replay them on reconnect
    const during = leaseValue("198.18.0.21", "0a:58:c6:13:15:00");
    await etcd.etcdctl(["put", `${P}/subnets/198.19.21.0-24`, during]);
    await etcd.etcdctl(["put", `${P}/subnets/198.19.22.0-24`, during]);
    await etcd.etcdctl(["del", `${P}/subnets/198.19.20.0-24`]);
    await waitFor("the watch to recover", () => rec.recovered > 0);
    await waitFor("the writes made during the reconnect", () => rec.deletes("198.19.20.0-24").length === 1);
    expect(rec.puts("198.19.21.0-24").length).toBe(1);
    expect(rec.puts("198.19.22.0-24").length).toBe(1);
    expect(valuesOf(rec.state.values())).toEqual(valuesOf((await reg.list()).records));
    expect(rec.events.some((e) => e.type === "resync")).toBe(false);

    // and it keeps going
    await reg.create("198.19.23.0-24", during, 60_000);
    await waitFor("a write after recovery", () => rec.puts("198.19.23.0-24").length === 1);
  }, 90_000);

  test("cut off from etcd while others write: the watch replays exactly what it missed", async () => {
    const port = Number(new URL(etcd.endpoint).port);
    const proxy = await startTcpProxy("127.0.0.1", port);
    const cutReg = await createEtcdRegistry({
      endpoints: [`http://${proxy.address}`],
      prefix: P,
      log: silentLogger,
    });
    try {
      const v = (i: number) => leaseValue(`198.18.0.${i}`, "0a:58:c6:13:3c:00");
      await reg.create("198.19.60.0-24", v(60), 3_600_000);
      const { records, revision } = await cutReg.list();
      const rec = recorder().start(cutReg, revision, records);
      await reg.create("198.19.61.0-24", v(61), 3_600_000);
      await waitFor("an event before the cut", () => rec.puts("198.19.61.0-24").length === 1);

      await proxy.cut();
      await waitFor("the watch to notice the cut", () => rec.errors.length > 0);
      expect(rec.errors[0]!.message).toContain(proxy.address);
      // etcd is up: others write while this watch cannot reconnect
      await reg.create("198.19.62.0-24", v(62), 3_600_000);
      await reg.renew("198.19.60.0-24", v(63), 3_600_000);
      await reg.delete("198.19.61.0-24");
      await etcd.etcdctl(["put", `${P}/subnets/198.19.64.0-24`, v(64)]);
      expect(rec.recovered).toBe(0);

      await proxy.restore();
      await waitFor("the watch to recover", () => rec.recovered > 0);
      await waitFor("the missed writes", () => rec.puts("198.19.64.0-24").length === 1);
      expect(rec.puts("198.19.60.0-24").length).toBe(1);
      expect(rec.puts("198.19.62.0-24").length).toBe(1);
      expect(rec.deletes("198.19.61.0-24").length).toBe(1);
      expect(rec.events.some((e) => e.type === "resync")).toBe(false);
      expect(valuesOf(rec.state.values())).toEqual(valuesOf((await reg.list()).records));
    } finally {
      await cutReg.close();
      await proxy.close();
    }
  }, 60_000);

  test("compaction past the watch revision: one resync with exactly the live set, then events again", async () => {
    const v = (i: number) => leaseValue(`198.18.0.${i}`, "0a:58:c6:13:1e:00");
    await reg.create("198.19.30.0-24", v(30), 60_000);
    await reg.create("198.19.31.0-24", v(31), 60_000);
    const { records, revision } = await reg.list();
    // changes the watch will never see as events: a put, an update, a delete
    await reg.create("198.19.32.0-24", v(32), 60_000);
    await reg.renew("198.19.30.0-24", v(33), 60_000);
    await reg.delete("198.19.31.0-24");
    await etcd.compact();

    const rec = recorder().start(reg, revision, records);
    await waitFor("a resync", () => rec.events.some((e) => e.type === "resync"));
    const resyncs = rec.events.filter((e) => e.type === "resync");
    expect(resyncs.length).toBe(1);
    expect(valuesOf(rec.state.values())).toEqual({ "198.19.30.0-24": v(33), "198.19.32.0-24": v(32) });

    await reg.create("198.19.34.0-24", v(34), 60_000);
    await waitFor("an event after the resync", () => rec.puts("198.19.34.0-24").length === 1);
    expect(valuesOf(rec.state.values())).toEqual(valuesOf((await reg.list()).records));
  });

  test("etcd recreated empty (revisions start again): one resync, no phantom leases", async () => {
    const v = (i: number) => leaseValue(`198.18.0.${i}`, "0a:58:c6:13:46:00");
    for (let i = 0; i < 20; i++)
      await reg.create("198.19.70.0-24", v(70), null).then(() => reg.delete("198.19.70.0-24"));
    await reg.create("198.19.71.0-24", v(71), null);
    const { records, revision } = await reg.list();
    const rec = recorder().start(reg, revision, records);
    await reg.create("198.19.72.0-24", v(72), null);
    await waitFor("an event before the wipe", () => rec.puts("198.19.72.0-24").length === 1);

    await etcd.stop();
    rmSync(etcd.dataDir, { recursive: true, force: true });
    await etcd.start();
    await etcd.etcdctl(["put", `${P}/subnets/198.19.73.0-24`, v(73)]);

    await waitFor("a resync", () => rec.events.some((e) => e.type === "resync"));
    await waitFor("the new lease", () => rec.state.has("198.19.73.0-24"));
    expect(rec.events.filter((e) => e.type === "resync").length).toBe(1);
    expect(valuesOf(rec.state.values())).toEqual({ "198.19.73.0-24": v(73) });
    expect(valuesOf((await reg.list()).records)).toEqual({ "198.19.73.0-24": v(73) });
  }, 60_000);

  test("malformed records are delivered raw and decode to a reason, never a crash", async () => {
    const cfg = parseNetworkConfig(CONFIG);
    const good = leaseValue("198.18.0.40", "0a:58:c6:13:28:00");
    const bad: Record<string, string> = {
      "198.19.40.0-24": "this is not JSON",
      "198.19.41.0-24": '{"PublicIP":5,"BackendType":"vxlan"}',
      "10.0.0.0-24": good, // outside the network
      "198.19.42.1-24": good, // not aligned
      "198.19.43.0-25": good, // not SubnetLen
      "198.19.44.0-24":
        '{"PublicIP":"999.1.1.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:2c:00"}}',
      "198.19.45.0-24":
        '{"PublicIP":"198.18.0.45","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"not-a-mac"}}',
    };
    const { revision } = await reg.list();
    const rec = recorder().start(reg, revision);
    for (const [k, val] of Object.entries(bad)) await etcd.etcdctl(["put", `${P}/subnets/${k}`, val]);
    await etcd.etcdctl(["put", `${P}/subnets/198.19.46.0-24`, good]);

    await waitFor("every record in the watch", () => rec.state.size === Object.keys(bad).length + 1);
    for (const [k, val] of Object.entries(bad)) {
      const r = rec.state.get(k)!;
      expect(r.value).toBe(val);
      const d = decodeLeaseRecord(r, cfg);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.reason.length).toBeGreaterThan(0);
    }
    expect(decodeLeaseRecord(rec.state.get("198.19.46.0-24")!, cfg).ok).toBe(true);
    expect(valuesOf((await reg.list()).records)).toEqual(valuesOf(rec.state.values()));
    expect(rec.errors).toEqual([]);
  });

  test("a list is paged at one revision and returns every record", async () => {
    const paged = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      log: silentLogger,
      pageSize: 3,
    });
    try {
      const keys = Array.from({ length: 10 }, (_, i) => `198.19.${80 + i}.0-24`);
      for (const k of keys) await reg.create(k, leaseValue("198.18.0.80", "0a:58:c6:13:50:00"), 60_000);
      const { records, revision } = await paged.list();
      expect(records.map((r) => r.key).sort()).toEqual(keys.sort());
      expect(revision).toBe(await etcd.revision());
      expect(valuesOf(records)).toEqual(valuesOf((await reg.list()).records));
    } finally {
      await paged.close();
    }
  });

  test("the prefix is honoured and a trailing slash ignored; nothing outside it is seen", async () => {
    const other = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: "/tartan/test/",
      log: silentLogger,
    });
    try {
      await other.create("198.19.50.0-24", "x", null);
      expect(await etcd.etcdctl(["get", "--print-value-only", "/tartan/test/subnets/198.19.50.0-24"])).toBe(
        "x\n",
      );
      expect((await reg.list()).records.find((r) => r.key === "198.19.50.0-24")).toBeUndefined();
      expect(valuesOf((await other.list()).records)).toEqual({ "198.19.50.0-24": "x" });
    } finally {
      await etcd.etcdctl(["del", "--prefix", "/tartan/"]);
      await other.close();
    }
  });
});
