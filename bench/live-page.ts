/**
 * What the live page costs the agent: GET / (status snapshot → page model → HTML) and
 * GET /metrics rendered from an in-memory status of N leases with a doctor report, run
 * through the real Hono app. Medians and max of `repeats` renders after a warm-up; the
 * page's size. Not a test: it prints a table (docs/observability.md quotes it).
 *   node_modules/.bin/bun bench/live-page.ts [--repeats=N]
 */
import { parseArgs } from "node:util";
import type { DoctorReport } from "../src/doctor/report.ts";
import { createApp } from "../src/http/app.ts";
import { statusWithLeases } from "../test/helpers/status-fixture.ts";

const { values } = parseArgs({ options: { repeats: { type: "string", default: "30" } } });
const repeats = Number(values.repeats);

function report(n: number): DoctorReport {
  const probes = Array.from({ length: Math.min(n - 1, 10_000) }, (_, i) => ({
    lease: `198.19.0.${i}/24`,
    publicIp: `198.18.0.${i}`,
    target: `198.19.0.${i}`,
    ok: true,
    rttMs: 0.05 + i / 1e4,
    error: null,
  }));
  const details = probes.map(
    (p) => `${p.target} (lease ${p.lease}, node ${p.publicIp}): ${p.rttMs.toFixed(3)} ms`,
  );
  return {
    node: "n1",
    backend: "ebpf-vxlan",
    kernel: "6.1",
    at: new Date().toISOString(),
    settings: {},
    checks: [{ id: "peers", status: "ok", finding: "…", why: "…", fix: "", fixable: false, details }],
    probes,
    summary: { ok: 1, warning: 0, problem: 0 },
    exitCode: 0,
  };
}

async function time(fn: () => Promise<unknown>): Promise<{ median: number; max: number }> {
  for (let i = 0; i < 3; i++) await fn();
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)]!, max: ms[ms.length - 1]! };
}

console.log(`bun ${Bun.version}, ${repeats} renders each, after 3 warm-up renders\n`);
console.log("| leases | GET / median | GET / max | page size | GET /?page=50 median | GET /metrics median |");
console.log("|---:|---:|---:|---:|---:|---:|");
for (const n of [3, 100, 1_000, 10_000]) {
  const s = statusWithLeases(n);
  const r = report(n);
  const app = createApp({ status: async () => s, config: () => ({}), doctor: async () => r });
  const body = async (path: string) => (await app.request(path)).text();
  const size = (await body("/")).length;
  const page = await time(() => body("/"));
  const deep = await time(() => body("/?page=50"));
  const metrics = await time(() => body("/metrics"));
  console.log(
    `| ${n.toLocaleString("en-US")} | ${page.median.toFixed(1)} ms | ${page.max.toFixed(1)} ms | ${(size / 1024).toFixed(0)} KiB | ${deep.median.toFixed(1)} ms | ${metrics.median.toFixed(2)} ms |`,
  );
}
