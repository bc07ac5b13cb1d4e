/**
 * A doctor run as data (`DoctorReport`, what --json prints and GET /v1/doctor serves)
 * and as text for a person: one line per check, then for every check that is not ok
 * why it matters and how to fix it, then what --fix changed. Pure.
 */

import type { Check, CheckStatus } from "./checks.ts";
import type { ProbeResult } from "./facts.ts";

export interface FixResult {
  readonly id: string;
  /** Exactly what was changed, one entry per change (commands run, files written). */
  readonly changed: readonly string[];
  /** Why a repair failed, if it did. */
  readonly error: string | null;
}

export interface DoctorReport {
  readonly node: string;
  readonly backend: string | null;
  readonly kernel: string;
  /** ISO time the facts were gathered. */
  readonly at: string;
  /** Where each setting came from: flag, agent or default. */
  readonly settings: Readonly<Record<string, unknown>>;
  readonly checks: readonly Check[];
  /** Every peer probe of this run, as data (the `peers` check says the same in words); null when not probed. */
  readonly probes: readonly ProbeResult[] | null;
  /** Present after --fix: the repairs tried (the checks above are re-run after them). */
  readonly fixes?: readonly FixResult[];
  readonly summary: Readonly<Record<CheckStatus, number>>;
  /** 0 when no check is a problem (warnings allowed unless --strict), else 1. */
  readonly exitCode: number;
}

export function summarize(checks: readonly Check[]): Record<CheckStatus, number> {
  const s: Record<CheckStatus, number> = { ok: 0, warning: 0, problem: 0 };
  for (const c of checks) s[c.status]++;
  return s;
}

export function exitCodeOf(checks: readonly Check[], strict: boolean): number {
  return checks.some((c) => c.status === "problem" || (strict && c.status === "warning")) ? 1 : 0;
}

const MARK: Record<CheckStatus, string> = { ok: "ok", warning: "WARNING", problem: "PROBLEM" };

export function formatReport(r: DoctorReport): string {
  const out: string[] = [];
  out.push(`tartan doctor: node ${r.node}, backend ${r.backend ?? "unknown"}, kernel ${r.kernel}, ${r.at}`);
  out.push("");
  const w = Math.max(...r.checks.map((c) => c.id.length));
  for (const c of r.checks) out.push(`${MARK[c.status].padEnd(8)} ${c.id.padEnd(w)}  ${c.finding}`);
  const bad = r.checks.filter((c) => c.status !== "ok");
  for (const c of bad) {
    out.push("");
    out.push(`${MARK[c.status]} ${c.id}: ${c.finding}`);
    for (const d of c.details ?? []) if (d !== c.finding) out.push(`  - ${d}`);
    out.push(`  why: ${c.why}`);
    if (c.fix) out.push(`  fix: ${c.fix}${c.fixable ? "" : " (not done by --fix)"}`);
  }
  if (r.fixes) {
    out.push("");
    if (r.fixes.length === 0) out.push("--fix: nothing to repair");
    for (const f of r.fixes) {
      if (f.error) out.push(`--fix ${f.id}: FAILED: ${f.error}`);
      for (const ch of f.changed) out.push(`--fix ${f.id}: ${ch}`);
    }
  }
  out.push("");
  const s = r.summary;
  out.push(
    `${s.ok} ok, ${s.warning} warning(s), ${s.problem} problem(s)${r.fixes ? " after --fix" : ""}${
      bad.some((c) => c.fixable) && !r.fixes ? "; `tartan doctor --fix` repairs those marked fixable" : ""
    }`,
  );
  return `${out.join("\n")}\n`;
}
