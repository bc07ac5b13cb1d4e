/**
 * What the agent knows about itself, as plain data: the shape served at /v1/* and
 * printed by `tartan status`, plus the health and readiness verdicts derived from it.
 * Pure: the agent fills it, HTTP and the CLI read it.
 */
import type { BackendName } from "../config/network.ts";

export interface LeaseView {
  readonly subnet: string;
  readonly publicIp: string;
  readonly backendType: string;
  readonly vni: number | null;
  readonly vtepMac: string | null;
  /** ISO time, or null for a reservation. */
  readonly expiresAt: string | null;
  readonly own: boolean;
  readonly programmed: boolean;
}

export interface Verdict {
  readonly ok: boolean;
  readonly reasons: string[];
}

export interface AgentStatus {
  readonly node: string;
  readonly version: string;
  readonly backend: BackendName | null;
  readonly startedAt: string;
  readonly network: string | null;
  readonly registry: {
    readonly description: string;
    /** ok, or degraded while it errors (the datapath keeps what it has). */
    readonly state: "ok" | "degraded" | "connecting";
    readonly lastError: string | null;
    readonly revision: number;
  };
  readonly lease: {
    readonly subnet: string;
    readonly publicIp: string;
    readonly expiresAt: string | null;
    readonly renewAt: string | null;
  } | null;
  readonly subnetFile: { readonly path: string; readonly written: boolean };
  /** Every lease (empty when the caller asked for a summary only: see `counts`). */
  readonly leases: LeaseView[];
  /** Lease counts, always filled (cheap for /metrics with 10,000 leases). */
  readonly counts: { readonly leases: number; readonly programmed: number };
  readonly health: Verdict;
  readonly ready: Verdict;
  readonly counters: Record<string, number>;
  readonly metrics: AgentMetrics;
}

export interface AgentMetrics {
  renewals: number;
  renewalFailures: number;
  registryErrors: number;
  invalidRecords: number;
  acquisitions: number;
  applyErrors: number;
  lastApplyMs: number;
  /** Times the watchdog rebuilt a broken datapath. */
  repairs: number;
}

export function newMetrics(): AgentMetrics {
  return {
    renewals: 0,
    renewalFailures: 0,
    registryErrors: 0,
    invalidRecords: 0,
    repairs: 0,
    acquisitions: 0,
    applyErrors: 0,
    lastApplyMs: 0,
  };
}

/** Prometheus exposition text for a status snapshot. */
export function formatMetrics(s: AgentStatus): string {
  const lines: string[] = [];
  const metric = (name: string, type: "gauge" | "counter", help: string, value: number, labels = "") => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${labels} ${value}`);
  };
  metric("tartan_leases", "gauge", "Valid leases known from the registry, ours included.", s.counts.leases);
  metric(
    "tartan_leases_programmed",
    "gauge",
    "Remote leases programmed in the datapath.",
    s.counts.programmed,
  );
  metric("tartan_lease_held", "gauge", "1 while this node holds a lease.", s.lease ? 1 : 0);
  metric(
    "tartan_lease_acquisitions_total",
    "counter",
    "Leases acquired (first and after a loss).",
    s.metrics.acquisitions,
  );
  metric("tartan_lease_renewals_total", "counter", "Successful lease renewals.", s.metrics.renewals);
  metric(
    "tartan_lease_renewal_failures_total",
    "counter",
    "Failed lease renewal attempts.",
    s.metrics.renewalFailures,
  );
  metric("tartan_registry_errors_total", "counter", "Failed registry operations.", s.metrics.registryErrors);
  metric(
    "tartan_registry_invalid_records_total",
    "counter",
    "Registry records skipped because they failed validation.",
    s.metrics.invalidRecords,
  );
  metric(
    "tartan_registry_degraded",
    "gauge",
    "1 while the registry is unreachable.",
    s.registry.state === "ok" ? 0 : 1,
  );
  metric("tartan_registry_revision", "gauge", "Last registry revision seen.", s.registry.revision);
  metric(
    "tartan_datapath_apply_errors_total",
    "counter",
    "Failed attempts to program the datapath.",
    s.metrics.applyErrors,
  );
  metric(
    "tartan_datapath_last_apply_seconds",
    "gauge",
    "Duration of the last datapath apply.",
    s.metrics.lastApplyMs / 1000,
  );
  metric(
    "tartan_datapath_repairs_total",
    "counter",
    "Times a broken datapath was rebuilt by the agent.",
    s.metrics.repairs,
  );
  metric("tartan_ready", "gauge", "1 when /readyz is 200.", s.ready.ok ? 1 : 0);
  metric("tartan_healthy", "gauge", "1 when /healthz is 200.", s.health.ok ? 1 : 0);
  // Packet verdicts (encap_*/decap_*/vxlan_*) are counters; anything else a backend reports is a gauge.
  const names = Object.keys(s.counters).sort();
  const verdicts = names.filter((n) => /^(encap|decap|vxlan)_/.test(n));
  if (verdicts.length > 0) {
    lines.push(
      "# HELP tartan_datapath_packets_total Datapath verdicts by reason (eBPF per-CPU counters summed, or device statistics).",
    );
    lines.push("# TYPE tartan_datapath_packets_total counter");
    for (const n of verdicts) lines.push(`tartan_datapath_packets_total{reason="${n}"} ${s.counters[n]}`);
  }
  for (const n of names.filter((x) => !verdicts.includes(x)))
    metric(
      `tartan_datapath_${n.replace(/[^a-zA-Z0-9_]/g, "_")}`,
      "gauge",
      `Datapath gauge ${n}.`,
      s.counters[n]!,
    );
  return `${lines.join("\n")}\n`;
}
