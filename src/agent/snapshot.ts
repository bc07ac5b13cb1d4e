/**
 * The agent's state as the status contract (src/status): what /v1/status, /healthz,
 * /readyz, /metrics and `tartan status` show, with the health and readiness verdicts
 * and their reasons. Pure: the agent gathers the facts, this words them.
 */
import type { BackendHealth } from "../backend/backend.ts";
import { formatCidr, formatIp4 } from "../config/cidr.ts";
import { formatCidr6, formatIp6 } from "../config/cidr6.ts";
import type { BackendName, NetworkConfig } from "../config/network.ts";
import type { Lease } from "../lease/lease.ts";
import { SLICE, yieldToLoop } from "../slices.ts";
import type { AgentMetrics, AgentStatus, LeaseView } from "../status/status.ts";

export type AgentPhase = "starting" | "acquiring" | "running" | "failed";

export interface StatusFacts {
  readonly node: string;
  readonly version: string;
  readonly backend: BackendName | null;
  readonly startedAt: Date;
  readonly phase: AgentPhase;
  readonly stopping: boolean;
  /** The event loop missed its heartbeat for this long (ms). */
  readonly stalledMs: number;
  readonly config: NetworkConfig | null;
  readonly source: {
    readonly description: string;
    readonly state: "ok" | "degraded" | "connecting";
    readonly lastError: string | null;
    /** What the agent waits for from the source (our Node's podCIDR), or null. */
    readonly waiting?: string | null;
    /** Objects of the source that are not leases, per reason (the kube source's Nodes); null for registries. */
    readonly skipped?: Readonly<Record<string, number>> | null;
  };
  readonly revision: number;
  readonly own: Lease | null;
  readonly renewAt: number | null;
  readonly subnetFile: string;
  readonly subnetWritten: boolean;
  readonly localSet: boolean;
  /** Every valid lease (ours included) and the remote ones programmed; null before the lease sync exists. */
  readonly leases: ReadonlyMap<string, Lease> | null;
  readonly programmed: ReadonlyMap<string, Lease> | null;
  /** Remote leases programmed and still wanted, when the lease sync keeps the count (else counted here). */
  readonly programmedCount?: number;
  readonly synced: boolean;
  /** The datapath's own verdict; null when there is no backend (yet). */
  readonly datapath: BackendHealth | null;
  readonly counters: Record<string, number>;
  readonly metrics: AgentMetrics;
}

/** The loop heartbeat ticks every second; this much silence means the loop is stuck. */
export const STALL_MS = 5000;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function healthReasons(f: StatusFacts): string[] {
  const out: string[] = [];
  if (f.stalledMs > STALL_MS) out.push("agent loop stalled");
  if (f.stopping) out.push("agent is stopping");
  if (f.datapath) {
    if (!f.datapath.ok) out.push(`datapath: ${f.datapath.reason ?? "not attached"}`);
  } else if (f.phase === "failed") out.push("agent failed to start");
  return out;
}

function readyReasons(f: StatusFacts): string[] {
  const out: string[] = [];
  if (f.source.waiting) out.push(f.source.waiting);
  if (!f.config) out.push("waiting for the network config");
  if (!f.own) out.push(f.phase === "acquiring" ? "acquiring a lease" : "no lease held");
  if (!f.subnetWritten) out.push(`${f.subnetFile} not written yet`);
  if (!f.localSet) out.push("datapath not set up for our subnet yet");
  if (!f.synced) out.push("datapath not yet in sync with the registry");
  if (f.source.state !== "ok")
    out.push(`registry ${f.source.state}${f.source.lastError ? `: ${f.source.lastError}` : ""}`);
  return out;
}

/** A lease's IPv6 side as status shows it: only the fields it has, so IPv4-only views stay as they were. */
function ipv6Fields(l: Lease): { subnet6?: string; publicIpv6?: string } {
  const sn6 = l.subnet6 ?? null;
  const pub6 = l.attrs.publicIpv6 ?? null;
  return {
    ...(sn6 !== null ? { subnet6: formatCidr6(sn6) } : {}),
    ...(pub6 !== null ? { publicIpv6: formatIp6(pub6) } : {}),
  };
}

function leaseView(f: StatusFacts, l: Lease, ownKey: string | undefined): LeaseView {
  return {
    subnet: formatCidr(l.subnet),
    ...ipv6Fields(l),
    publicIp: formatIp4(l.attrs.publicIp),
    backendType: l.attrs.backendType,
    vni: l.attrs.vxlan?.VNI ?? null,
    vtepMac: l.attrs.vxlan?.VtepMAC ?? null,
    expiresAt: iso(l.expiresAt),
    own: l.key === ownKey,
    programmed: l.key === ownKey ? f.localSet : (f.programmed?.has(l.key) ?? false),
  };
}

function leaseViews(f: StatusFacts): LeaseView[] {
  const ownKey = f.own?.key;
  return [...(f.leases?.values() ?? [])].map((l) => leaseView(f, l, ownKey));
}

/**
 * Every lease as the status shows it, built a slice at a time (50,000 leases are tens of
 * milliseconds of formatting: the HTTP endpoint answers probes in between).
 */
export async function leaseViewsSliced(f: StatusFacts): Promise<LeaseView[]> {
  const ownKey = f.own?.key;
  const out: LeaseView[] = [];
  for (const l of f.leases?.values() ?? []) {
    out.push(leaseView(f, l, ownKey));
    if (out.length % SLICE === 0) await yieldToLoop();
  }
  return out;
}

function programmedCount(f: StatusFacts): number {
  if (f.programmedCount !== undefined) return f.programmedCount;
  const ownKey = f.own?.key;
  let n = 0;
  if (f.programmed && f.leases) for (const k of f.programmed.keys()) if (k !== ownKey && f.leases.has(k)) n++;
  return n;
}

/** The status snapshot; `withLeases: false` leaves the per-lease list out (counts stay). */
export function agentStatus(f: StatusFacts, withLeases = true): AgentStatus {
  const health = healthReasons(f);
  const ready = readyReasons(f);
  const programmed = programmedCount(f);
  const c6 = f.config?.ipv6 ?? null;
  let leases6 = 0;
  if (c6 && f.leases) for (const l of f.leases.values()) if (l.subnet6) leases6++;
  return {
    node: f.node,
    version: f.version,
    backend: f.backend,
    startedAt: f.startedAt.toISOString(),
    network: f.config ? formatCidr(f.config.network) : null,
    ...(c6 ? { network6: formatCidr6(c6.network) } : {}),
    registry: { ...f.source, revision: f.revision },
    lease: f.own
      ? {
          subnet: formatCidr(f.own.subnet),
          ...ipv6Fields(f.own),
          publicIp: formatIp4(f.own.attrs.publicIp),
          expiresAt: iso(f.own.expiresAt),
          renewAt: iso(f.renewAt),
        }
      : null,
    subnetFile: { path: f.subnetFile, written: f.subnetWritten },
    leases: withLeases ? leaseViews(f) : [],
    counts: { leases: f.leases?.size ?? 0, programmed, ...(c6 ? { leases6 } : {}) },
    health: { ok: health.length === 0, reasons: health },
    ready: { ok: ready.length === 0, reasons: ready },
    counters: f.counters,
    metrics: f.metrics,
  };
}
