/**
 * Doctor's latest probe of every peer, per lease, from the report the agent already keeps
 * (its `probes`). The page shows it per lease, /metrics summarises it.
 */
import type { DoctorReport } from "../doctor/report.ts";

export interface PeerProbe {
  /** The lease probed, as a CIDR ("198.19.3.0/24"). */
  readonly subnet: string;
  readonly publicIp: string;
  /** What was pinged (the peer's VTEP address, or its PublicIP for host-gw). */
  readonly target: string;
  /** Round trip in ms; null when the peer did not answer. */
  readonly rttMs: number | null;
}

/** Parsed once per report: the page and /metrics ask for every request, a report lasts a minute. */
const parsed = new WeakMap<DoctorReport, ReadonlyMap<string, PeerProbe>>();

/** Every probe of the report's `peers` check, keyed by subnet; empty without a report or probes. */
export function peerProbes(report: DoctorReport | null): ReadonlyMap<string, PeerProbe> {
  if (!report) return new Map();
  const cached = parsed.get(report);
  if (cached) return cached;
  const out = parse(report);
  parsed.set(report, out);
  return out;
}

function parse(report: DoctorReport): Map<string, PeerProbe> {
  const out = new Map<string, PeerProbe>();
  for (const p of report.probes ?? []) {
    const subnet = p.lease.replace(/-(\d+)$/, "/$1"); // a lease key or a CIDR: the CIDR
    out.set(subnet, { subnet, publicIp: p.publicIp, target: p.target, rttMs: p.ok ? p.rttMs : null });
  }
  return out;
}
