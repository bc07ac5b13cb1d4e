/**
 * What the Grafana dashboard and the Prometheus rules ask of /metrics: the metric names
 * their queries use, the families a /metrics text declares, and promtool runs. Shared by
 * the unit test (in-memory agent) and the e2e test (live agents).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./tartan.ts";

export const RULES_DIR = join(ROOT, "deploy/prometheus");
export const DASHBOARD = join(ROOT, "deploy/grafana/tartan.json");

export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string }[];
}

export function dashboardPanels(): DashboardPanel[] {
  const d = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: DashboardPanel[] };
  return d.panels;
}

export function ruleFiles(): string[] {
  return readdirSync(RULES_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => join(RULES_DIR, f));
}

export interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  annotations?: Record<string, string>;
}

export function alertRules(): AlertRule[] {
  return ruleFiles().flatMap((f) =>
    (Bun.YAML.parse(readFileSync(f, "utf8")) as { groups: { rules: AlertRule[] }[] }).groups.flatMap(
      (g) => g.rules,
    ),
  );
}

/** The tartan_… metric names a PromQL expression reads. */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\btartan_[a-zA-Z0-9_]+\b/g)].map((m) => m[0]))];
}

/** Grafana's variables replaced by values PromQL accepts, for a syntax check. */
export function concreteExpr(expr: string): string {
  return expr.replaceAll("$__rate_interval", "5m").replaceAll("$instance", ".*");
}

/** Every family a /metrics text declares (`# TYPE name …`), with or without samples now. */
export function declaredFamilies(metricsText: string): Set<string> {
  return new Set([...metricsText.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!));
}

export function promtool(args: string[], stdin?: string): { code: number; out: string } {
  const p = Bun.spawnSync(["promtool", ...args], {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode ?? -1, out: `${p.stdout}${p.stderr}` };
}

/** Writes the dashboard's queries as recording rules into `dir` and has promtool parse them. */
export function checkDashboardQueries(dir: string): { code: number; out: string } {
  const rules = dashboardPanels()
    .flatMap((p) => p.targets ?? [])
    .map(
      (t, i) => `      - record: grafana_query_${i}\n        expr: ${JSON.stringify(concreteExpr(t.expr))}\n`,
    );
  const file = join(dir, "grafana-queries.rules.yaml");
  writeFileSync(file, `groups:\n  - name: grafana\n    rules:\n${rules.join("")}`);
  return promtool(["check", "rules", file]);
}
