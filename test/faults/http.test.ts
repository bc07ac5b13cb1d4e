/**
 * Fault: the agent's HTTP endpoint under abuse — 1,000 concurrent connections (raw
 * sockets, so no client pool caps them), 1,000 idle half-sent requests (slowloris) while
 * a probe still needs an answer, malformed requests (garbage, huge headers and URLs, bad
 * methods, bodies nobody asked for) and every write method on every path. Pass: the agent
 * stays up and answers /healthz throughout, memory (VmRSS from /proc/PID/status) stays
 * bounded, writes get 405 and change nothing, traffic loses nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Cluster } from "../helpers/cluster.ts";
import { isRoot, status } from "../helpers/tartan.ts";
import { summary, TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, faultCluster, record } from "./report.ts";

const REGISTRY = "sqlite" as const;
const CONNECTIONS = 1000;
/** What the agent may grow by while it serves the abuse. */
const RSS_BUDGET_KB = 200 * 1024;

const rssKb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);

/** Runs inside the node's namespace: raw-socket clients against 127.0.0.1:8471; prints JSON. */
const LOAD_SCRIPT = `
const PORT = 8471, N = ${CONNECTIONS};
const paths = ["/healthz", "/readyz", "/v1/status", "/v1/leases", "/metrics", "/v1/config"];
function exchange(bytes, { holdMs = 0, timeoutMs = 20000 } = {}) {
  return new Promise((resolve) => {
    let buf = "";
    let done = false;
    const finish = (r) => { if (!done) { done = true; resolve(r); } };
    const t = setTimeout(() => finish({ status: "timeout", got: buf.slice(0, 40) }), timeoutMs);
    Bun.connect({
      hostname: "127.0.0.1", port: PORT,
      socket: {
        open(s) {
          if (holdMs > 0) { s.write(bytes); setTimeout(() => { s.end(); }, holdMs); return; }
          s.write(bytes);
        },
        data(s, d) { buf += Buffer.from(d).toString("latin1"); const m = /^HTTP\\/1\\.[01] (\\d{3})/.exec(buf); if (m && holdMs === 0) { clearTimeout(t); s.end(); finish({ status: Number(m[1]) }); } },
        close() { clearTimeout(t); const m = /^HTTP\\/1\\.[01] (\\d{3})/.exec(buf); finish({ status: m ? Number(m[1]) : "closed" }); },
        error(s, e) { clearTimeout(t); finish({ status: "error:" + e.code }); },
      },
    }).catch((e) => { clearTimeout(t); finish({ status: "connect:" + (e.code || e.message) }); });
  });
}
const tally = (rs) => rs.reduce((m, r) => ((m[r.status] = (m[r.status] || 0) + 1), m), {});
const req = (m, p, extra = "") => "" + m + " " + p + " HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n" + extra + "\\r\\n";
const out = {};
// 1. a thousand concurrent GETs
out.concurrent = tally(await Promise.all(Array.from({ length: N }, (_, i) => exchange(req("GET", paths[i % paths.length])))));
// 2. a thousand idle half-sent requests held open while a probe asks /healthz
const idle = Array.from({ length: N }, () => exchange("GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: ", { holdMs: 4000, timeoutMs: 15000 }));
await Bun.sleep(500);
const t0 = Date.now();
out.probeDuringSlowloris = (await exchange(req("GET", "/healthz"))).status;
out.probeMs = Date.now() - t0;
out.slowloris = tally(await Promise.all(idle));
// 3. malformed requests
const malformed = {
  garbage: "\\x00\\x01\\x02\\xff\\xfe garbage\\r\\n\\r\\n",
  noVersion: "GET /healthz\\r\\n\\r\\n",
  badVersion: "GET /healthz HTTP/9.9\\r\\nHost: x\\r\\n\\r\\n",
  hugeUrl: req("GET", "/v1/status?" + "a".repeat(100000)),
  hugeHeader: req("GET", "/healthz", "X-Big: " + "b".repeat(200000) + "\\r\\n"),
  manyHeaders: req("GET", "/healthz", Array.from({ length: 5000 }, (_, i) => "X-H" + i + ": v\\r\\n").join("")),
  traversal: req("GET", "/../../../../etc/passwd"),
  encodedTraversal: req("GET", "/v1/%2e%2e/%2e%2e/etc/passwd"),
  badMethod: req("BREW", "/healthz"),
  connect: "CONNECT 127.0.0.1:22 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n",
  badContentLength: "POST /v1/config HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: -5\\r\\nConnection: close\\r\\n\\r\\n",
  smuggle: "POST /v1/config HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\nConnection: close\\r\\n\\r\\n0\\r\\n\\r\\n",
  bigBody: "POST /v1/config HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 10485760\\r\\nConnection: close\\r\\n\\r\\n" + "z".repeat(10485760),
  nullInPath: req("GET", "/healthz\\x00/x"),
};
out.malformed = {};
for (const [k, v] of Object.entries(malformed)) out.malformed[k] = (await exchange(v)).status;
// 4. every write method on every path
out.writes = {};
for (const p of [...paths, "/v1/status", "/"]) for (const m of ["POST", "PUT", "DELETE", "PATCH"])
  out.writes[m + " " + p] = (await exchange(req(m, p, "Content-Type: application/json\\r\\nContent-Length: 2\\r\\n") + "{}")).status;
console.log(JSON.stringify(out));
`;

describe.skipIf(!isRoot() || !backendAvailable())(`faults: HTTP endpoint abuse (${BACKEND})`, () => {
  let cl: Cluster;
  beforeAll(async () => {
    cl = await faultCluster(REGISTRY, { tag: "fw" });
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });

  test(`${CONNECTIONS} concurrent connections, slowloris, malformed requests, writes: stays up, bounded memory, read-only`, async () => {
    const n = cl.nodes[0]!;
    const pid = n.agent.proc.pid;
    const configBefore = (await cl.lab.http(n.ns, "/v1/config")).body;
    const leasesBefore = (await status(cl.lab, n.ns)).leases.map((l) => l.subnet).sort();
    const rss0 = rssKb(pid);
    let peak = rss0;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssKb(pid));
      } catch {}
    }, 100);
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    let load: Record<string, unknown>;
    try {
      const out = await cl.lab.must(n.ns, [process.execPath, "-e", LOAD_SCRIPT]);
      load = JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>;
    } finally {
      clearInterval(sampler);
    }
    const r = await mon.stop();
    const alive = n.agent.proc.exitCode === null;
    const healthz = await cl.lab.http(n.ns, "/healthz");
    const configAfter = (await cl.lab.http(n.ns, "/v1/config")).body;
    const leasesAfter = (await status(cl.lab, n.ns)).leases.map((l) => l.subnet).sort();
    const rss1 = rssKb(pid);
    const concurrent = load.concurrent as Record<string, number>;
    const writes = load.writes as Record<string, number | string>;
    const malformed = load.malformed as Record<string, number | string>;
    const okWrites = Object.values(writes).every((s) => s === 405 || s === 404);
    const ok =
      alive &&
      healthz.status === 200 &&
      concurrent["200"] === CONNECTIONS &&
      load.probeDuringSlowloris === 200 &&
      okWrites &&
      configAfter === configBefore &&
      peak - rss0 < RSS_BUDGET_KB &&
      r.lost === 0;
    record({
      fault: `HTTP: ${CONNECTIONS} concurrent connections, slowloris, malformed requests, write methods`,
      backend: BACKEND,
      registry: REGISTRY,
      lost: r.lost,
      sent: r.sent,
      convergeMs: null,
      result: ok
        ? "pass"
        : `fail: ${JSON.stringify({ alive, healthz: healthz.status, concurrent, okWrites })}`,
      detail: {
        concurrent,
        probeDuringSlowlorisMs: load.probeMs,
        slowloris: load.slowloris,
        malformed,
        rssKb: { before: rss0, peak, after: rss1 },
      },
    });
    console.log(`[fault] http: ${JSON.stringify(load)}; ${summary(r)}`);
    expect(alive).toBe(true);
    expect(healthz.status).toBe(200);
    expect(concurrent).toEqual({ "200": CONNECTIONS });
    expect(load.probeDuringSlowloris).toBe(200);
    // read-only: every write is refused (the live page at / included) and changes nothing
    for (const [k, s] of Object.entries(writes)) expect({ k, s }).toEqual({ k, s: 405 });
    expect(configAfter).toBe(configBefore);
    expect(leasesAfter).toEqual(leasesBefore);
    // malformed requests get an error status or a closed connection: never a 2xx, never a hang
    for (const [k, s] of Object.entries(malformed))
      expect({ k, ok: s !== "timeout" && !(typeof s === "number" && s >= 200 && s < 300) }).toEqual({
        k,
        ok: true,
      });
    expect(peak - rss0).toBeLessThan(RSS_BUDGET_KB);
    expect(r.lost).toBe(0);
  }, 120_000);
});
