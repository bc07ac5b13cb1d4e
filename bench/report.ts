/**
 * Turning samples into the benchmark's outputs: medians with min–max, ratios to
 * reference-vxlan and to host-gw, a Markdown table (bench/RESULTS.md) and an SVG bar
 * chart of the ratios. Pure apart from the file writes at the end.
 */
import type { ControlPlaneResult } from "./control-plane/sqlite-batch.ts";
import type { ConfigName } from "./topologies.ts";

export interface Metric {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  /** true when more is better (throughput), false when less is (latency, CPU) */
  readonly higherIsBetter: boolean;
}

export const METRICS: Metric[] = [
  { id: "tcp1", label: "TCP 1 stream", unit: "Gbit/s", higherIsBetter: true },
  { id: "tcp4", label: "TCP 4 streams", unit: "Gbit/s", higherIsBetter: true },
  { id: "udp64", label: "UDP 64 B received", unit: "kpps", higherIsBetter: true },
  { id: "p50", label: "RTT p50 (ICMP echo)", unit: "µs", higherIsBetter: false },
  { id: "p99", label: "RTT p99 (ICMP echo)", unit: "µs", higherIsBetter: false },
  { id: "rr50", label: "TCP request/response p50 (one CPU)", unit: "µs", higherIsBetter: false },
  { id: "rr99", label: "TCP request/response p99 (one CPU)", unit: "µs", higherIsBetter: false },
  { id: "cpu", label: "CPU per Gbit (TCP 1)", unit: "CPU-s/Gbit", higherIsBetter: false },
];

export type Samples = Map<ConfigName, Map<string, number[]>>;

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(xs: readonly number[]): Summary {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** ratio of `x` to `ref` (plain division: >1 means bigger; read with the metric's direction) */
export function ratio(x: number, ref: number): number {
  return ref > 0 && Number.isFinite(x) ? x / ref : Number.NaN;
}

const fmt = (x: number, digits = 2) =>
  Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(digits)) : "–";

export function dataTable(configs: readonly ConfigName[], samples: Samples): string {
  const head = `| metric | ${configs.join(" | ")} | ${configs
    .filter((c) => c !== "reference-vxlan" && c !== "host-gw")
    .flatMap((c) => [`${c} ÷ reference-vxlan`, `${c} ÷ host-gw`])
    .join(" | ")} |`;
  const sep = `|${"---|".repeat(head.split("|").length - 2)}`;
  const rows = METRICS.map((m) => {
    const med = (c: ConfigName) => summarize(samples.get(c)?.get(m.id) ?? []);
    const cells = configs.map((c) => {
      const s = med(c);
      return s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
    });
    const ratios = configs
      .filter((c) => c !== "reference-vxlan" && c !== "host-gw")
      .flatMap((c) => [
        `${fmt(ratio(med(c).median, med("reference-vxlan").median))}×`,
        `${fmt(ratio(med(c).median, med("host-gw").median))}×`,
      ]);
    return `| ${m.label} [${m.unit}${m.higherIsBetter ? ", higher is better" : ", lower is better"}] | ${cells.join(" | ")} | ${ratios.join(" | ")} |`;
  });
  return [head, sep, ...rows].join("\n");
}

export function controlTable(rs: readonly ControlPlaneResult[]): string {
  const rows = rs.map(
    (r) =>
      `| ${r.backend} | ${r.leases.toLocaleString("en")} | ${fmt(r.applyMs, 1)} | ${fmt(r.endToEndMs, 0)} | ${fmt(r.rssMiB, 1)} | ${fmt(r.startToReadyMs, 0)} |`,
  );
  return [
    "| backend | leases | programmed after delivery [ms] | registry commit → all programmed [ms] | agent RSS [MiB] | start → /readyz [ms] |",
    "|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

/** A grouped bar chart: per metric, each Tartan config's median relative to reference-vxlan (1.0 = same). */
export function svgChart(configs: readonly ConfigName[], samples: Samples): string {
  const shown = configs.filter((c) => c !== "reference-vxlan");
  const colors: Record<string, string> = {
    "host-gw": "#9aa5b1",
    "tartan-vxlan": "#4f8fd6",
    "tartan-ebpf": "#2a9d5c",
  };
  const W = 820;
  const H = 360;
  const left = 60;
  const bottom = 300;
  const groupW = (W - left - 20) / METRICS.length;
  const barW = (groupW - 20) / shown.length;
  const vals = METRICS.map((m) =>
    shown.map((c) => {
      const r = ratio(
        summarize(samples.get(c)?.get(m.id) ?? []).median,
        summarize(samples.get("reference-vxlan")?.get(m.id) ?? []).median,
      );
      // show "how much better than the reference": invert for lower-is-better metrics
      return m.higherIsBetter ? r : 1 / r;
    }),
  );
  const maxV = Math.max(2, ...vals.flat().filter(Number.isFinite));
  const y = (v: number) => bottom - (v / maxV) * 250;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="18" font-size="13">Tartan vs flannel-style kernel VXLAN (1.0 = reference-vxlan; taller is better)</text>`,
    `<line x1="${left}" x2="${W - 10}" y1="${y(1)}" y2="${y(1)}" stroke="#c33" stroke-dasharray="4 3"/>`,
    `<text x="${left - 6}" y="${y(1) + 4}" text-anchor="end">1.0</text>`,
    `<line x1="${left}" x2="${left}" y1="${bottom}" y2="30" stroke="#333"/>`,
  ];
  METRICS.forEach((m, i) => {
    const gx = left + 10 + i * groupW;
    shown.forEach((c, j) => {
      const v = vals[i]![j]!;
      if (!Number.isFinite(v)) return;
      parts.push(
        `<rect x="${gx + j * barW}" y="${y(v)}" width="${barW - 2}" height="${bottom - y(v)}" fill="${colors[c] ?? "#888"}"/>`,
      );
      parts.push(
        `<text x="${gx + j * barW + (barW - 2) / 2}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${v.toFixed(2)}</text>`,
      );
    });
    parts.push(
      `<text x="${gx + (groupW - 20) / 2}" y="${bottom + 16}" text-anchor="middle">${m.label}</text>`,
    );
  });
  shown.forEach((c, j) => {
    parts.push(
      `<rect x="${left + 10 + j * 150}" y="${H - 28}" width="12" height="12" fill="${colors[c] ?? "#888"}"/>`,
    );
    parts.push(`<text x="${left + 28 + j * 150}" y="${H - 18}">${c}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Issue 17's targets, judged from this run's medians (a measurement, never a test assertion). */
export function targetsTable(samples: Samples, cp: readonly ControlPlaneResult[]): string {
  const med = (c: ConfigName, id: string) => summarize(samples.get(c)?.get(id) ?? []).median;
  const rows: string[] = [];
  const row = (what: string, value: number, cmp: "ge" | "le", goal: number, unit = "×") => {
    const met = Number.isFinite(value) ? (cmp === "ge" ? value >= goal : value <= goal) : null;
    rows.push(
      `| ${what} | ${cmp === "ge" ? "≥" : "≤"} ${goal}${unit} | ${fmt(value)}${unit} | ${met === null ? "not measured" : met ? "met" : "**missed**"} |`,
    );
  };
  const r = (ref: ConfigName, id: string) => ratio(med("tartan-ebpf", id), med(ref, id));
  row("ebpf-vxlan UDP 64 B ÷ host-gw", r("host-gw", "udp64"), "ge", 1.2);
  row("ebpf-vxlan TCP 1 stream ÷ host-gw", r("host-gw", "tcp1"), "ge", 1.0);
  row("ebpf-vxlan TCP 4 streams ÷ host-gw", r("host-gw", "tcp4"), "ge", 1.0);
  row("ebpf-vxlan RTT p50 (ICMP) ÷ host-gw", r("host-gw", "p50"), "le", 1.0);
  row("ebpf-vxlan TCP request/response p50 ÷ host-gw", r("host-gw", "rr50"), "le", 1.0);
  row("ebpf-vxlan CPU per Gbit ÷ host-gw", r("host-gw", "cpu"), "le", 1.0);
  row("ebpf-vxlan UDP 64 B ÷ reference-vxlan", r("reference-vxlan", "udp64"), "ge", 1.6);
  row("ebpf-vxlan TCP 1 stream ÷ reference-vxlan", r("reference-vxlan", "tcp1"), "ge", 1.15);
  row("ebpf-vxlan TCP 4 streams ÷ reference-vxlan", r("reference-vxlan", "tcp4"), "ge", 1.15);
  row("ebpf-vxlan RTT p50 (ICMP) ÷ reference-vxlan", r("reference-vxlan", "p50"), "le", 0.7);
  row("ebpf-vxlan TCP request/response p50 ÷ reference-vxlan", r("reference-vxlan", "rr50"), "le", 0.7);
  const big = cp.find((x) => x.backend === "ebpf-vxlan" && x.leases === 10_000);
  row("10,000 leases programmed by ebpf-vxlan after delivery", big?.applyMs ?? Number.NaN, "le", 50, " ms");
  row("agent RSS with 10,000 leases (ebpf-vxlan)", big?.rssMiB ?? Number.NaN, "le", 64, " MiB");
  return ["| target (issues 17 and 7) | goal | this run | |", "|---|---|---|---|", ...rows].join("\n");
}
