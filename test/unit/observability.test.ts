import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DoctorReport } from "../../src/doctor/report.ts";
import { createApp } from "../../src/http/app.ts";
import {
  alertRules,
  checkDashboardQueries,
  dashboardPanels,
  declaredFamilies,
  metricNames,
  promtool,
  RULES_DIR,
  ruleFiles,
} from "../helpers/observability.ts";
import { statusWithLeases } from "../helpers/status-fixture.ts";
import { ROOT } from "../helpers/tartan.ts";

/** /metrics of an in-memory agent with datapath counters and a doctor report. */
async function metricsText(): Promise<string> {
  const report = {
    at: "2026-01-01T11:59:00.000Z",
    checks: [{ id: "mtu", status: "ok", finding: "", why: "", fix: "", fixable: false }],
  } as unknown as DoctorReport;
  const app = createApp({
    status: async () => statusWithLeases(3),
    config: () => ({}),
    doctor: async () => report,
  });
  return (await app.request("/metrics")).text();
}

/** Headings of docs/doctor.md as GitHub anchors. */
function doctorAnchors(): Set<string> {
  const md = readFileSync(join(ROOT, "docs/doctor.md"), "utf8");
  return new Set(
    [...md.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
      m[1]!
        .toLowerCase()
        .replace(/[^a-z0-9 -]/g, "")
        .replace(/ /g, "-"),
    ),
  );
}

describe("Prometheus rules (deploy/prometheus)", () => {
  test("promtool check rules passes on every rules file", () => {
    expect(ruleFiles().length).toBeGreaterThan(0);
    for (const f of ruleFiles()) {
      const r = promtool(["check", "rules", f]);
      expect(r.out).toContain("SUCCESS");
      expect(r.code).toBe(0);
    }
  });

  test("promtool test rules passes, and every alert has a test that fires it", () => {
    const testFile = join(RULES_DIR, "tests/tartan-rules.test.yaml");
    const r = promtool(["test", "rules", testFile]);
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
    const tests = Bun.YAML.parse(readFileSync(testFile, "utf8")) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const fired = new Set(
      tests.tests.flatMap((t) =>
        (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length).map((a) => a.alertname),
      ),
    );
    const alerts = alertRules().flatMap((a) => (a.alert ? [a.alert] : []));
    expect(alerts).toEqual(
      expect.arrayContaining([
        "TartanAgentDown",
        "TartanRegistryDegraded",
        "TartanLeasesNotProgrammed",
        "TartanDatapathDrops",
        "TartanLeaseExpiringWithoutRenewal",
        "TartanDoctorProblem",
      ]),
    );
    for (const a of alerts) expect({ alert: a, fired: fired.has(a) }).toEqual({ alert: a, fired: true });
  });

  test("every alert has a runbook line naming a section of docs/doctor.md that exists", () => {
    const anchors = doctorAnchors();
    for (const a of alertRules().filter((r) => r.alert)) {
      const runbook = a.annotations?.runbook ?? "";
      const refs = [...runbook.matchAll(/docs\/doctor\.md#([\w{}$. -]+?)(?=[),]|$)/g)].map((m) => m[1]!);
      expect({ alert: a.alert, refs: refs.length > 0 }).toEqual({ alert: a.alert, refs: true });
      for (const ref of refs.filter((x) => !x.includes("{{")))
        expect({ alert: a.alert, ref, exists: anchors.has(ref) }).toEqual({
          alert: a.alert,
          ref,
          exists: true,
        });
    }
  });

  test("every metric an alert reads is one the agent exports", async () => {
    const exported = declaredFamilies(await metricsText());
    for (const a of alertRules())
      for (const m of metricNames(a.expr))
        expect({ metric: m, exported: exported.has(m) }).toEqual({ metric: m, exported: true });
  });
});

describe("Grafana dashboard (deploy/grafana/tartan.json)", () => {
  test("valid: unique panel ids, every panel placed and queried", () => {
    const panels = dashboardPanels();
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.gridPos.w).toBeGreaterThan(0);
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      if (p.type === "row") continue;
      expect({ panel: p.title, targets: (p.targets ?? []).length > 0 }).toEqual({
        panel: p.title,
        targets: true,
      });
    }
    const titles = panels.map((p) => p.title.toLowerCase()).join(" | ");
    for (const want of ["leases", "programmed", "apply latency", "registry state", "verdicts", "drops"])
      expect(titles).toContain(want);
  });

  test("every query parses as PromQL and names a metric the agent exports", async () => {
    const exported = declaredFamilies(await metricsText());
    for (const p of dashboardPanels())
      for (const t of p.targets ?? []) {
        const names = metricNames(t.expr);
        expect({ panel: p.title, names: names.length > 0 }).toEqual({ panel: p.title, names: true });
        for (const m of names)
          expect({ panel: p.title, metric: m, exported: exported.has(m) }).toEqual({
            panel: p.title,
            metric: m,
            exported: true,
          });
      }
    const dir = mkdtempSync(join(tmpdir(), "tartan-grafana-"));
    try {
      const r = checkDashboardQueries(dir);
      expect(r.out).toContain("SUCCESS");
      expect(r.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
