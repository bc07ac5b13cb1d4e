/**
 * Fault: hostile content in the registry, written behind the agents' backs while traffic
 * runs — a 1 MB value (garbage and as valid JSON), 20,000 junk keys (100,000 with
 * TARTAN_SOAK=1), invalid UTF-8 in a value and in a key, JSON with extra fields (accepted,
 * as flannel does) and with missing ones, subnets overlapping ours or outside the
 * network. Pass: no agent crashes, each stays healthy and ready, 0 packets lost, every
 * invalid record is skipped and counted once in /metrics
 * (tartan_registry_invalid_records_total), none is programmed, and RSS stays bounded.
 * Runs on sqlite (written through the registry API, the invalid UTF-8 as raw BLOBs) and on
 * etcd (raw bytes through the etcd3 client, from inside etcd's namespace).
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { silentLogger } from "../../src/log.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import type { Cluster } from "../helpers/cluster.ts";
import { run, until } from "../helpers/netns.ts";
import { isRoot, status } from "../helpers/tartan.ts";
import { summary, TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, faultCluster, record, SOAK, timed } from "./report.ts";

const REGISTRIES: ("sqlite" | "etcd")[] = ["sqlite", "etcd"];
const ETCD_PREFIX = "/coreos.com/network/subnets/";
const JUNK_KEYS = SOAK ? 100_000 : 20_000;
const MB = 1 << 20;
/** An agent may grow this much while it digests the flood, and no more. */
const RSS_BUDGET_KB = 300 * 1024;

const rssKb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);

async function invalidCount(cl: Cluster, ns: string): Promise<number> {
  const r = await cl.lab.http(ns, "/metrics");
  const m = /^tartan_registry_invalid_records_total (\d+)$/m.exec(r.body);
  if (r.status !== 200 || !m)
    throw new Error(`/metrics answered ${r.status} without the invalid-records counter`);
  return Number(m[1]);
}

/** Bytes no UTF-8 decoder accepts. */
const BAD_UTF8 = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80]);

type Raw = [key: Buffer | string, value: Buffer | string];

/** sqlite: records through the registry API; raw BLOBs straight into the file, with an event. */
async function writeSqlite(cl: Cluster, records: Raw[], raw: Raw[], junk: number): Promise<void> {
  const path = cl.registry.slice("sqlite:".length);
  const reg = SqliteRegistry.open({ path, log: silentLogger });
  try {
    for (const [k, v] of records) await reg.create(String(k), String(v), null);
    for (let i = 0; i < junk; i++) await reg.create(`junk-${i}`, "{}", null);
  } finally {
    await reg.close();
  }
  // written the way a foreign tool would: straight into the file, with an event so watchers see them
  const db = new Database(path, { readwrite: true });
  try {
    db.exec("PRAGMA busy_timeout = 10000");
    db.transaction(() => {
      for (const [k, v] of raw) {
        db.run("INSERT INTO events (type, key, value, expires_at) VALUES ('put', ?1, ?2, NULL)", [k, v]);
        const rev = db.query<{ r: number }, []>("SELECT last_insert_rowid() AS r").get()!.r;
        db.run("INSERT INTO leases (key, value, expires_at, revision) VALUES (?1, ?2, NULL, ?3)", [
          k,
          v,
          rev,
        ]);
      }
    }).immediate();
  } finally {
    db.close();
  }
}

/** etcd: raw bytes through the etcd3 client, run inside etcd's namespace. */
async function writeEtcd(cl: Cluster, records: Raw[], raw: Raw[], junk: number): Promise<void> {
  const ns = cl.lab.namespaces.find((n) => n.endsWith("-etcd"))!;
  const spec = join(cl.lab.dir, "hostile-etcd.json");
  const b64 = (x: Buffer | string) => Buffer.from(x).toString("base64");
  writeFileSync(
    spec,
    JSON.stringify({
      endpoint: cl.registry,
      prefix: ETCD_PREFIX,
      junk,
      records: [...records, ...raw].map(([k, v]) => [b64(k), b64(v)]),
    }),
  );
  const script = `
import { Etcd3 } from "etcd3";
const s = JSON.parse(await Bun.file(${JSON.stringify(spec)}).text());
const c = new Etcd3({ hosts: [s.endpoint], grpcOptions: { "grpc.max_send_message_length": 64 << 20 } });
const key = (k) => Buffer.concat([Buffer.from(s.prefix), k]);
for (const [k, v] of s.records) await c.put(key(Buffer.from(k, "base64"))).value(Buffer.from(v, "base64"));
for (let i = 0; i < s.junk; i += 500)
  await Promise.all(Array.from({ length: Math.min(500, s.junk - i) }, (_, j) => c.put(key(Buffer.from("junk-" + (i + j)))).value("{}")));
c.close();
console.log("written");
`;
  const out = await run(["nsenter", `--net=/run/netns/${ns}`, "--", process.execPath, "-e", script]);
  if (!out.stdout.includes("written")) throw new Error(`writing to etcd failed: ${out.stderr}`);
}

for (const registry of REGISTRIES)
  describe.skipIf(!isRoot() || !backendAvailable())(
    `faults: hostile registry content (${BACKEND}, ${registry})`,
    () => {
      let cl: Cluster;
      beforeAll(async () => {
        cl = await faultCluster(registry, { tag: "fh" });
      }, 120_000);
      afterAll(async () => {
        await cl?.close();
      });

      test(
        `1 MB values, ${JUNK_KEYS} junk keys, invalid UTF-8, bad JSON, overlapping and outside subnets: skipped, counted, nothing breaks`,
        async () => {
          const own = parseSubnetEnv(readFileSync(cl.nodes[0]!.subnetFile, "utf8")).subnet;
          const ownNet = formatCidr(own).split("/")[0]!; // 198.19.X.0
          const ownThird = ownNet.split(".")[2]!;
          const good = (ip: string) => ({
            PublicIP: ip,
            BackendType: "vxlan",
            BackendData: { VNI: 1, VtepMAC: "0e:00:00:00:02:01" },
          });
          // key → value; each of these must be skipped and counted
          const invalid: [string, string][] = [
            ["198.19.241.0-24", "x".repeat(MB)], // 1 MB, not JSON
            ["198.19.242.0-24", JSON.stringify({ BackendType: "vxlan" })], // PublicIP missing
            ["198.19.243.0-24", JSON.stringify({ PublicIP: "198.18.1.3", BackendType: "vxlan" })], // BackendData missing
            ["198.19.244.0-24", JSON.stringify({ PublicIP: "not an ip", BackendType: "vxlan" })],
            [
              "198.19.245.0-24",
              JSON.stringify({ ...good("198.18.1.5"), BackendData: { VNI: -1, VtepMAC: "zz" } }),
            ],
            ["198.19.246.0-24", "null"],
            ["198.19.247.0-24", "[1,2,3]"],
            [`198.19.${ownThird}.0-25`, JSON.stringify(good("198.18.1.7"))], // overlaps ours (and the wrong size)
            ["198.19.0.0-16", JSON.stringify(good("198.18.1.8"))], // the whole network
            ["10.0.0.0-24", JSON.stringify(good("198.18.1.9"))], // outside the network
            ["198.20.0.0-24", JSON.stringify(good("198.18.1.10"))], // outside the network
            ["../../etc/passwd", JSON.stringify(good("198.18.1.11"))],
            ["198.19.248.0-24\n", JSON.stringify(good("198.18.1.12"))],
          ];
          // valid leases of nodes that do not exist: accepted (flannel keeps unknown fields)
          const valid: [string, string][] = [
            [
              "198.19.249.0-24",
              JSON.stringify({ ...good("198.18.1.13"), Extra: { nested: [1, 2, 3] }, Other: "x" }),
            ],
            ["198.19.250.0-24", JSON.stringify({ ...good("198.18.1.14"), Padding: "p".repeat(MB) })], // 1 MB, valid
          ];
          const before = await Promise.all(cl.nodes.map((n) => invalidCount(cl, n.ns)));
          const rssBefore = cl.nodes.map((n) => rssKb(n.agent.proc.pid));
          const mon = await TrafficMonitor.start(cl.lab, cl.nodes);

          const raw: Raw[] = [
            ["198.19.251.0-24", BAD_UTF8],
            [Buffer.concat([Buffer.from("198.19.252.0-24"), BAD_UTF8]), JSON.stringify(good("198.18.1.16"))],
          ];
          const write = registry === "sqlite" ? writeSqlite : writeEtcd;
          const { ms: writeMs } = await timed(() => write(cl, [...invalid, ...valid], raw, JUNK_KEYS));
          const expected = invalid.length + JUNK_KEYS + 2;

          // every agent digests it: counts every bad record, programs the valid ones
          let digested = true;
          const { ms } = await timed(() =>
            until(
              async () => {
                for (let i = 0; i < cl.nodes.length; i++) {
                  const n = cl.nodes[i]!;
                  if (n.agent.proc.exitCode !== null)
                    throw new Error(`agent ${n.agent.name} exited ${n.agent.proc.exitCode}`);
                  if ((await invalidCount(cl, n.ns)) - before[i]! < expected) return false;
                  const s = await status(cl.lab, n.ns);
                  if (!s.ready.ok || s.leases.length !== cl.nodes.length + valid.length) return false;
                }
                return true;
              },
              `every agent to count ${expected} invalid records and know ${cl.nodes.length + valid.length} leases`,
              SOAK ? 300_000 : 90_000,
            ).catch((e) => {
              digested = false;
              console.log((e as Error).message);
            }),
          );
          await Bun.sleep(500);
          const r = await mon.stop();
          const counted = await Promise.all(
            cl.nodes.map(async (n, i) => (await invalidCount(cl, n.ns)) - before[i]!),
          );
          const growth = cl.nodes.map((n, i) => rssKb(n.agent.proc.pid) - rssBefore[i]!);
          // no invalid subnet is a lease any agent knows, nor (kernel backends) a per-node route;
          // ebpf-vxlan's one route for the whole cluster network is by design, per-node routes are not
          const bad = new Set(invalid.map(([k]) => k.replace("-", "/")));
          const routes = (await cl.lab.must(cl.nodes[1]!.ns, ["ip", "route", "show"])).split("\n");
          const known = (await Promise.all(cl.nodes.map((n) => status(cl.lab, n.ns)))).flatMap((st) =>
            st.leases.map((l) => l.subnet),
          );
          const programmedBad = [
            ...known.filter((c) => bad.has(c)),
            // (the route for the cluster network itself is ebpf-vxlan's own: the lease view covers that key)
            ...routes.filter((l) => {
              const dst = l.split(" ")[0]!;
              return bad.has(dst) && dst !== "198.19.0.0/16" && l.includes(" via ");
            }),
          ];
          const health = await Promise.all(cl.nodes.map(async (n) => (await status(cl.lab, n.ns)).health));
          const ok =
            digested &&
            r.lost === 0 &&
            counted.every((c) => c === expected) &&
            programmedBad.length === 0 &&
            health.every((h) => h.ok) &&
            growth.every((g) => g < RSS_BUDGET_KB);
          record({
            fault: `hostile registry content (${JUNK_KEYS} junk keys, 1 MB values, invalid UTF-8, bad JSON, bad subnets)`,
            backend: BACKEND,
            registry,
            lost: r.lost,
            sent: r.sent,
            convergeMs: digested ? ms : null,
            result: ok
              ? "pass"
              : `fail: digested=${digested} counted=${counted} (want ${expected}) programmedBad=${programmedBad} rssGrowthKb=${growth}; ${summary(r)}`,
            detail: {
              writeMs,
              invalidCounted: counted,
              expected,
              rssGrowthKb: growth,
              tcpIntact: r.tcpIntact,
            },
          });
          expect(digested).toBe(true);
          expect(cl.nodes.map((n) => n.agent.proc.exitCode)).toEqual(cl.nodes.map(() => null));
          expect(health.every((h) => h.ok)).toBe(true);
          expect(r.lost).toBe(0);
          expect(counted).toEqual(cl.nodes.map(() => expected));
          expect(programmedBad).toEqual([]);
          for (const g of growth) expect(g).toBeLessThan(RSS_BUDGET_KB);
        },
        SOAK ? 600_000 : 150_000,
      );
    },
  );
