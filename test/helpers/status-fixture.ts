/**
 * An in-memory agent status with N leases (the first one ours), for the live page's unit
 * tests and its render benchmark: /24 subnets of 198.19.0.0/16 up to 256 leases, /30
 * beyond, node IPs in 198.18.0.0/16. Every 97th peer is not programmed.
 */
import { type AgentStatus, type LeaseView, newMetrics } from "../../src/status/status.ts";

export const FIXTURE_NOW = Date.parse("2026-01-01T12:00:00Z");

export function leaseAt(i: number, n: number): LeaseView {
  const subnet = n > 256 ? `198.19.${Math.floor((i * 4) / 256)}.${(i * 4) % 256}/30` : `198.19.${i}.0/24`;
  const hi = Math.floor((i + 1) / 256);
  const lo = (i + 1) % 256;
  return {
    subnet,
    publicIp: `198.18.${hi}.${lo}`,
    backendType: "vxlan",
    vni: 1,
    vtepMac: `0e:7a:00:00:${hi.toString(16).padStart(2, "0")}:${lo.toString(16).padStart(2, "0")}`,
    expiresAt: new Date(FIXTURE_NOW + 20 * 3600_000).toISOString(),
    own: i === 0,
    programmed: i % 97 !== 5,
  };
}

export function statusWithLeases(n: number, over: Partial<AgentStatus> = {}): AgentStatus {
  const leases = Array.from({ length: n }, (_, i) => leaseAt(i, n));
  return {
    node: "n1",
    version: "0.1.0 (test)",
    backend: "ebpf-vxlan",
    startedAt: new Date(FIXTURE_NOW - 3600_000).toISOString(),
    network: "198.19.0.0/16",
    registry: { description: "sqlite:/x", state: "ok", lastError: null, revision: 12 },
    lease: {
      subnet: leases[0]?.subnet ?? "198.19.0.0/24",
      publicIp: "198.18.0.1",
      expiresAt: new Date(FIXTURE_NOW + 24 * 3600_000).toISOString(),
      renewAt: new Date(FIXTURE_NOW + 23 * 3600_000).toISOString(),
    },
    subnetFile: { path: "/run/flannel/subnet.env", written: true },
    leases,
    counts: { leases: n, programmed: leases.filter((l) => !l.own && l.programmed).length },
    health: { ok: true, reasons: [] },
    ready: { ok: true, reasons: [] },
    counters: { encap_ok: 10, decap_redirect_peer: 7, decap_drop_non_member: 2, subnets: n - 1 },
    metrics: { ...newMetrics(), renewals: 3 },
    ...over,
  };
}
