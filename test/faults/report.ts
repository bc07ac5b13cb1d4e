/**
 * The fault suite's shared knobs and its results file. Every fault test appends one JSON
 * line {fault, backend, registry, lost, sent, convergeMs, result, ...} to
 * $TARTAN_FAULT_RESULTS (default .test-report/faults.jsonl) so docs/reliability.md's
 * table is generated from real runs:
 *
 *   bun test/faults/report.ts [FILE]     prints the results as a Markdown table
 *
 * Knobs (environment):
 *   TARTAN_FAULT_BACKEND=vxlan|ebpf-vxlan   the backend under test (default vxlan)
 *   TARTAN_SOAK=1                           full-length variants (30 s etcd outage, 100,000 keys, …)
 */
import { expect } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { summary, type TrafficMonitor } from "../helpers/traffic-monitor.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const RESULTS = process.env.TARTAN_FAULT_RESULTS ?? resolve(ROOT, ".test-report/faults.jsonl");
export const SOAK = process.env.TARTAN_SOAK === "1";
export const BACKEND = process.env.TARTAN_FAULT_BACKEND ?? "vxlan";

/** Is the backend wired into the binary's backend factory (src/backend/index.ts)? */
export function backendAvailable(name: string = BACKEND): boolean {
  const src = readFileSync(resolve(ROOT, "src/backend/index.ts"), "utf8");
  return new RegExp(`case "${name}"`).test(src);
}

export interface FaultResult {
  readonly fault: string;
  readonly backend: string;
  readonly registry: "sqlite" | "etcd" | "none";
  /** Ping packets lost over the fault (null where no traffic was measured). */
  readonly lost: number | null;
  readonly sent: number | null;
  /** From the end of the fault to the cluster serving again (null when not applicable). */
  readonly convergeMs: number | null;
  /** "pass" or "fail: <why>" — what the test concluded. */
  readonly result: string;
  /** Anything else worth a line in the table: longest gap, TCP bytes, drop counters. */
  readonly detail?: Record<string, unknown>;
}

/** Appends one result line (with the time and whether it was a soak run). */
export function record(r: FaultResult): void {
  mkdirSync(dirname(RESULTS), { recursive: true });
  appendFileSync(RESULTS, `${JSON.stringify({ at: new Date().toISOString(), soak: SOAK, ...r })}\n`);
  console.log(
    `[fault] ${r.fault} (${r.backend}, ${r.registry}): ${r.result}; lost ${r.lost ?? "-"}/${r.sent ?? "-"}, converged in ${r.convergeMs ?? "-"} ms${r.detail ? ` ${JSON.stringify(r.detail)}` : ""}`,
  );
}

/** Runs `fn` and returns its value with the milliseconds it took. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: Math.round(performance.now() - t0) };
}

/** Reads the results file into a Markdown table (the newest line per fault/backend/registry/soak wins). */
export function table(file = RESULTS): string {
  if (!existsSync(file)) return "(no results)";
  const last = new Map<string, Record<string, unknown>>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as Record<string, unknown>;
    last.set(`${r.fault}|${r.backend}|${r.registry}|${r.soak}`, r);
  }
  const rows = [
    "| fault | backend | registry | soak | lost / sent | converged (ms) | result | detail |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of last.values())
    rows.push(
      `| ${r.fault} | ${r.backend} | ${r.registry} | ${r.soak ? "yes" : "no"} | ${r.lost ?? "-"} / ${r.sent ?? "-"} | ${r.convergeMs ?? "-"} | ${r.result} | ${r.detail ? JSON.stringify(r.detail).replaceAll("|", "/") : ""} |`,
    );
  return rows.join("\n");
}

if (import.meta.main) console.log(table(process.argv[2] ?? RESULTS));

/** The fault suite's cluster: three nodes of the backend under test, one pod each. */
export async function faultCluster(
  registry: "sqlite" | "etcd",
  opts: { tag?: string; agentFlags?: string[]; nodes?: number; backend?: string; etcdMembers?: number } = {},
): Promise<import("../helpers/cluster.ts").Cluster> {
  const { Cluster } = await import("../helpers/cluster.ts");
  return Cluster.create({
    backends: Array.from({ length: opts.nodes ?? 3 }, () => opts.backend ?? BACKEND),
    registry,
    podsPerNode: 1,
    tag: opts.tag ?? "fx",
    agentFlags: opts.agentFlags,
    etcdMembers: opts.etcdMembers,
  });
}

/**
 * Records a fault whose target is zero loss under the traffic monitor, then asserts it:
 * no ping lost and the TCP stream intact. `detail` adds fault-specific figures.
 */
export function expectZeroLoss(
  fault: string,
  registry: "sqlite" | "etcd",
  r: Awaited<ReturnType<TrafficMonitor["stop"]>>,
  convergeMs: number,
  detail: Record<string, unknown> = {},
): void {
  const ok = r.lost === 0 && r.tcpIntact;
  record({
    fault,
    backend: BACKEND,
    registry,
    lost: r.lost,
    sent: r.sent,
    convergeMs,
    result: ok ? "pass" : `fail: ${summary(r)}`,
    detail: {
      longestGapMs: r.longestGapMs,
      longestSilenceMs: r.longestSilenceMs,
      tcpBytes: r.tcp.received,
      ...detail,
    },
  });
  expect({ fault, lost: r.lost, tcp: r.tcpIntact, summary: summary(r) }).toEqual({
    fault,
    lost: 0,
    tcp: true,
    summary: summary(r),
  });
}
