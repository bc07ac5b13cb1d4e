/**
 * The control-plane benchmark's tables (bench/RESULTS.md, between the markers below):
 * per path, backend and size the median over rounds with (min–max), the idle cost per
 * backend, and issue 15's targets judged from the medians. Pure.
 */
import { summarize } from "../report.ts";
import type { PathResult } from "./etcd-paths.ts";
import type { IdleResult } from "./idle.ts";

export const BEGIN = "<!-- control-plane-at-scale: written by scripts/bench --control-plane -->";
export const END = "<!-- /control-plane-at-scale -->";

const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "–");

/** "median (min–max)" of a field over rounds; just the value for one round. */
function cell(xs: readonly number[], digits = 0): string {
  const s = summarize(xs);
  if (s.n === 0) return "–";
  return s.n > 1 && s.min !== s.max
    ? `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`
    : fmt(s.median, digits);
}

const PATH_TEXT: Record<string, string> = {
  "burst-500": "etcd watch burst, ~500 puts/s",
  "burst-max": "etcd watch burst, as fast as possible (every lease rewritten)",
  resync: "etcd resync after compaction (a tenth rewritten)",
  list: "etcd list at start (a fresh node)",
  "kube-list": "Node informer: list at start",
  "kube-burst": "Node informer: watch burst, ~500 Nodes/s",
};

const ORDER = Object.keys(PATH_TEXT);

export function pathTable(rs: readonly PathResult[]): string {
  const groups = new Map<string, PathResult[]>();
  for (const r of rs) {
    const k = `${r.path}\0${r.backend}\0${r.leases}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const keys = [...groups.keys()].sort((a, b) => {
    const [pa, ba, na] = a.split("\0");
    const [pb, bb, nb] = b.split("\0");
    return ORDER.indexOf(pa!) - ORDER.indexOf(pb!) || Number(na) - Number(nb) || ba!.localeCompare(bb!);
  });
  const rows = keys.map((k) => {
    const g = groups.get(k)!;
    const r = g[0]!;
    const f = (fn: (x: PathResult) => number) => g.map(fn);
    return `| ${PATH_TEXT[r.path] ?? r.path} | ${r.backend} | ${r.leases.toLocaleString("en")} | ${cell(f((x) => x.lagMs))} | ${cell(
      f((x) => x.cpuS),
      2,
    )} (${cell(f((x) => x.cpuPct))} %) | ${cell(
      f((x) => x.childCpuS),
      2,
    )} | ${cell(f((x) => x.healthzWorstMs))} | ${cell(
      f((x) => x.healthzP99Ms),
    )} | ${cell(f((x) => x.rssBeforeMiB))} → ${cell(f((x) => x.rssAfterMiB))} | ${cell(f((x) => x.peakMiB))} | ${cell(
      f((x) => x.load),
      1,
    )} | ${g.length} |`;
  });
  return [
    "| path | backend | leases | last write → all programmed [ms] | agent CPU-s (% of a core) | of it in children [CPU-s] | /healthz worst [ms] | /healthz p99 [ms] | RSS before → after [MiB] | RSS peak [MiB] | load avg | rounds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

export function idleTable(rs: readonly IdleResult[]): string {
  const backends = [...new Set(rs.map((r) => r.backend))];
  const rows = backends.map((b) => {
    const g = rs.filter((r) => r.backend === b);
    return `| ${b} | ${cell(
      g.map((r) => r.cpuPct),
      2,
    )} | ${cell(
      g.map((r) => r.childCpuPct),
      2,
    )} | ${cell(g.map((r) => r.rssMiB))} | ${g[0]!.seconds} | ${cell(
      g.map((r) => r.load),
      1,
    )} | ${g.length} |`;
  });
  return [
    "| backend (on etcd, no peers) | idle CPU [% of a core] | of it in children [%] | RSS [MiB] | measured over [s] | load avg | rounds |",
    "|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

/** Issue 15's targets, judged from the medians (a measurement, never a test assertion). */
export function targetTable(
  rs: readonly PathResult[],
  idle: readonly IdleResult[],
  idleEtcdRss: number[],
): string {
  const med = (path: string, backend: string, n: number, fn: (r: PathResult) => number) =>
    summarize(rs.filter((r) => r.path === path && r.backend === backend && r.leases === n).map(fn)).median;
  const rows: string[] = [];
  const row = (what: string, value: number, goal: number, unit: string) => {
    const met = Number.isFinite(value) ? value <= goal : null;
    rows.push(
      `| ${what} | ≤ ${goal} ${unit} | ${fmt(value, unit === "%" ? 2 : 0)} ${unit} | ${met === null ? "not measured" : met ? "met" : "**missed**"} |`,
    );
  };
  for (const b of ["ebpf-vxlan", "vxlan"]) {
    row(
      `10,000 leases, etcd watch burst (${b}): all programmed after the last write`,
      med("burst-500", b, 10_000, (r) => r.lagMs),
      300,
      "ms",
    );
    row(
      `… /healthz worst during the burst (${b})`,
      med("burst-500", b, 10_000, (r) => r.healthzWorstMs),
      100,
      "ms",
    );
    row(
      `… agent CPU during the burst (${b})`,
      med("burst-500", b, 10_000, (r) => r.cpuPct),
      25,
      "% of a core",
    );
    row(
      `… RSS with 10,000 leases on etcd (${b})`,
      med("burst-500", b, 10_000, (r) => r.rssAfterMiB),
      80,
      "MiB",
    );
  }
  row("RSS idle on etcd (median over backends)", summarize(idleEtcdRss).median, 64, "MiB");
  for (const b of [...new Set(idle.map((r) => r.backend))])
    row(
      `idle CPU (${b})`,
      summarize(idle.filter((r) => r.backend === b).map((r) => r.cpuPct)).median,
      0.2,
      "%",
    );
  return ["| target (issue 15) | goal | median | |", "|---|---|---|---|", ...rows].join("\n");
}

/** `text` put between the markers in `md` (replacing what was there, or appended). */
export function withSection(md: string, text: string): string {
  const block = `${BEGIN}\n${text.trim()}\n${END}`;
  const a = md.indexOf(BEGIN);
  const b = md.indexOf(END);
  if (a >= 0 && b > a) return md.slice(0, a) + block + md.slice(b + END.length);
  return `${md.trimEnd()}\n\n${block}\n`;
}

/** The section between the markers, or null. */
export function sectionOf(md: string): string | null {
  const a = md.indexOf(BEGIN);
  const b = md.indexOf(END);
  return a >= 0 && b > a ? md.slice(a, b + END.length) : null;
}
