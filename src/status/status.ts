/**
 * What the agent knows about itself, as plain data: the shape served at /v1/* and
 * printed by `tartan status`, plus the health and readiness verdicts derived from it.
 * Pure: the agent fills it, HTTP and the CLI read it.
 */
import type { BackendName } from "../config/network.ts";

export interface LeaseView {
  readonly subnet: string;
  /** Dual stack: the lease's IPv6 subnet (absent in an IPv4-only lease). */
  readonly subnet6?: string;
  readonly publicIp: string;
  /** Dual stack: its PublicIPv6 (absent when it publishes none). */
  readonly publicIpv6?: string;
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
  /** Dual stack: the IPv6 network (absent in an IPv4-only network). */
  readonly network6?: string;
  readonly registry: {
    readonly description: string;
    /** ok, or degraded while it errors (the datapath keeps what it has). */
    readonly state: "ok" | "degraded" | "connecting";
    readonly lastError: string | null;
    readonly revision: number;
    /** What the agent waits for from the source (our Node's podCIDR), when it waits. */
    readonly waiting?: string | null;
    /** Source objects that are not leases right now, per reason (--kube-subnet-mgr: Nodes). */
    readonly skipped?: Readonly<Record<string, number>> | null;
  };
  readonly lease: {
    readonly subnet: string;
    /** Dual stack: our IPv6 subnet. */
    readonly subnet6?: string;
    readonly publicIp: string;
    /** Dual stack: our PublicIPv6. */
    readonly publicIpv6?: string;
    readonly expiresAt: string | null;
    readonly renewAt: string | null;
  } | null;
  readonly subnetFile: { readonly path: string; readonly written: boolean };
  /** Every lease (empty when the caller asked for a summary only: see `counts`). */
  readonly leases: LeaseView[];
  /** Lease counts, always filled (cheap for /metrics with 10,000 leases); `leases6`: those with an IPv6 subnet. */
  readonly counts: { readonly leases: number; readonly programmed: number; readonly leases6?: number };
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

/**
 * Datapath verdict counters (ebpf-vxlan's pod_…, encap_… (bridge), host_… and decap_…, and
 * their IPv6 twins encap6_…, host6_…, decap6_…; vxlan_…) only grow; anything else a
 * backend reports is a gauge.
 */
export function isVerdictCounter(name: string): boolean {
  return /^((pod|encap|host|decap)6?|vxlan)_/.test(name);
}

/** One sample of a metric family: its labels (values escaped on output) and value. */
export interface PromSample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const formatValue = (v: number) =>
  Number.isNaN(v) ? "NaN" : v === Infinity ? "+Inf" : v === -Infinity ? "-Inf" : String(v);

/**
 * One metric family in the Prometheus text format (HELP, TYPE, samples). A family with no
 * samples still declares itself, so dashboards and alerts can name it before it has any.
 */
export function promFamily(
  name: string,
  type: "gauge" | "counter",
  help: string,
  samples: readonly PromSample[],
): string[] {
  const lines = [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`];
  for (const s of samples) {
    const labels = Object.entries(s.labels ?? {});
    const l = labels.length ? `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}` : "";
    lines.push(`${name}${l} ${formatValue(s.value)}`);
  }
  return lines;
}

const isoSeconds = (iso: string | null) => (iso === null ? null : Date.parse(iso) / 1000);

/** A family with one unlabelled sample, or none while the value is unknown (null). */
const single = (name: string, type: "gauge" | "counter", help: string, value: number | null) =>
  promFamily(name, type, help, value === null ? [] : [{ value }]);

/** Prometheus exposition text for a status snapshot. */
export function formatMetrics(s: AgentStatus): string {
  const lines = [...agentMetrics(s), ...leaseMetrics(s), ...registryMetrics(s), ...datapathMetrics(s)];
  return `${lines.join("\n")}\n`;
}

/** What runs: build, start time. */
function agentMetrics(s: AgentStatus): string[] {
  return [
    ...promFamily("tartan_build_info", "gauge", "Always 1; labels name the node, version and backend.", [
      { labels: { node: s.node, version: s.version, backend: s.backend ?? "" }, value: 1 },
    ]),
    ...single(
      "tartan_start_time_seconds",
      "gauge",
      "When the agent started (Unix time).",
      isoSeconds(s.startedAt),
    ),
  ];
}

/** The leases known and programmed, and this node's own lease. */
function leaseMetrics(s: AgentStatus): string[] {
  return [
    ...single(
      "tartan_leases",
      "gauge",
      "Valid leases known from the registry, ours included.",
      s.counts.leases,
    ),
    ...single(
      "tartan_leases_ipv6",
      "gauge",
      "Valid leases with an IPv6 subnet (dual stack), ours included.",
      s.counts.leases6 ?? 0,
    ),
    ...single(
      "tartan_ipv6_enabled",
      "gauge",
      "1 when the network is dual stack (EnableIPv6).",
      s.network6 ? 1 : 0,
    ),
    ...single(
      "tartan_leases_programmed",
      "gauge",
      "Remote leases programmed in the datapath.",
      s.counts.programmed,
    ),
    ...single("tartan_lease_held", "gauge", "1 while this node holds a lease.", s.lease ? 1 : 0),
    ...single(
      "tartan_lease_expiry_timestamp_seconds",
      "gauge",
      "When this node's lease expires unless renewed (Unix time; absent for a reservation).",
      isoSeconds(s.lease?.expiresAt ?? null),
    ),
    ...single(
      "tartan_lease_renew_timestamp_seconds",
      "gauge",
      "When the agent renews its lease (Unix time); at or before now while a renewal is due or being retried.",
      isoSeconds(s.lease?.renewAt ?? null),
    ),
    ...single(
      "tartan_lease_acquisitions_total",
      "counter",
      "Leases acquired (first and after a loss).",
      s.metrics.acquisitions,
    ),
    ...single("tartan_lease_renewals_total", "counter", "Successful lease renewals.", s.metrics.renewals),
    ...single(
      "tartan_lease_renewal_failures_total",
      "counter",
      "Failed lease renewal attempts.",
      s.metrics.renewalFailures,
    ),
  ];
}

/** The registry (or the Kubernetes API): errors, skipped records, state, revision. */
function registryMetrics(s: AgentStatus): string[] {
  const lines = [
    ...single(
      "tartan_registry_errors_total",
      "counter",
      "Failed registry operations.",
      s.metrics.registryErrors,
    ),
    ...single(
      "tartan_registry_invalid_records_total",
      "counter",
      "Registry records skipped because they failed validation.",
      s.metrics.invalidRecords,
    ),
    ...single(
      "tartan_registry_degraded",
      "gauge",
      "1 while the registry is unreachable.",
      s.registry.state === "ok" ? 0 : 1,
    ),
    ...promFamily(
      "tartan_registry_state",
      "gauge",
      "1 for the registry's current state (ok, degraded or connecting), 0 for the others.",
      (["ok", "degraded", "connecting"] as const).map((state) => ({
        labels: { state },
        value: s.registry.state === state ? 1 : 0,
      })),
    ),
    ...single("tartan_registry_revision", "gauge", "Last registry revision seen.", s.registry.revision),
  ];
  if (s.registry.skipped)
    lines.push(
      ...promFamily(
        "tartan_kube_nodes_skipped",
        "gauge",
        "Nodes that are not leases right now, by reason (--kube-subnet-mgr; a fixed set of reasons).",
        Object.entries(s.registry.skipped).map(([reason, value]) => ({ labels: { reason }, value })),
      ),
    );
  return lines;
}

/** The datapath: applies, repairs, readiness and health, and the backend's counters. */
function datapathMetrics(s: AgentStatus): string[] {
  const lines = [
    ...single(
      "tartan_datapath_apply_errors_total",
      "counter",
      "Failed attempts to program the datapath.",
      s.metrics.applyErrors,
    ),
    ...single(
      "tartan_datapath_last_apply_seconds",
      "gauge",
      "Duration of the last datapath apply.",
      s.metrics.lastApplyMs / 1000,
    ),
    ...single(
      "tartan_datapath_repairs_total",
      "counter",
      "Times a broken datapath was rebuilt by the agent.",
      s.metrics.repairs,
    ),
    ...single("tartan_ready", "gauge", "1 when /readyz is 200.", s.ready.ok ? 1 : 0),
    ...single("tartan_healthy", "gauge", "1 when /healthz is 200.", s.health.ok ? 1 : 0),
  ];
  const names = Object.keys(s.counters).sort();
  lines.push(
    ...promFamily(
      "tartan_datapath_packets_total",
      "counter",
      "Datapath verdicts by reason (eBPF per-CPU counters summed, or device statistics).",
      names.filter(isVerdictCounter).map((reason) => ({ labels: { reason }, value: s.counters[reason]! })),
    ),
  );
  for (const n of names.filter((x) => !isVerdictCounter(x)))
    lines.push(
      ...single(
        `tartan_datapath_${n.replace(/[^a-zA-Z0-9_]/g, "_")}`,
        "gauge",
        `Datapath gauge ${n}.`,
        s.counters[n]!,
      ),
    );
  return lines;
}
