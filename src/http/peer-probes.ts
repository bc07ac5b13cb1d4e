/**
 * Doctor's latest probe of every peer, per lease, read back from the report the agent
 * already keeps: the `peers` check lists one detail line per probe (see checkPeers in
 * src/doctor/checks.ts). The page shows it per lease, /metrics summarises it.
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

// "198.19.3.0 (lease 198.19.3.0-24, node 198.18.0.3): 0.123 ms" or "…: no answer (…)"
const DETAIL = /^(\S+) \(lease (\S+)-(\d+), node (\S+)\): (?:([0-9.]+) ms|no answer)/;

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
  const check = report.checks.find((c) => c.id === "peers");
  for (const line of check?.details ?? []) {
    const m = DETAIL.exec(line);
    if (!m) continue;
    const subnet = `${m[2]}/${m[3]}`;
    out.set(subnet, {
      subnet,
      publicIp: m[4]!,
      target: m[1]!,
      rttMs: m[5] === undefined ? null : Number(m[5]),
    });
  }
  return out;
}
