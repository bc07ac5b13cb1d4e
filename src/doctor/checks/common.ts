/**
 * What every doctor check shares: the verdict's shape, what the facts imply for this
 * node (`derive`: the backend, its device, the pods' MTU, which remote leases it
 * programs — all from the backend's own facts, src/backend/facts.ts), and the small
 * helpers the checks write their findings with. Pure.
 */
import { type BackendFacts, backendFacts, type PeerScope, podMtu } from "../../backend/facts.ts";
import { dualStackMtu } from "../../backend/vxlan/facts.ts";
import { type Cidr, formatCidr } from "../../config/cidr.ts";
import type { BackendName } from "../../config/network.ts";
import type { Lease } from "../../lease/lease.ts";
import type { Facts, LinkFacts } from "../facts.ts";

export type CheckStatus = "ok" | "warning" | "problem";

export interface Check {
  /** Stable id (the --json key and the docs' heading). */
  readonly id: string;
  readonly status: CheckStatus;
  /** One line naming the exact object. */
  readonly finding: string;
  /** Why it matters. */
  readonly why: string;
  /** The command or flag that fixes it ("" when ok). */
  readonly fix: string;
  /** `tartan doctor --fix` can repair it. */
  readonly fixable: boolean;
  /** Every object concerned, when there are several. */
  readonly details?: readonly string[];
}

/** A lease closer than this to its expiry is about to be lost. */
export const LEASE_EXPIRY_MARGIN_MS = 5 * 60_000;
/** The kernel that fixed the VXLAN checksum bug behind the 63-second Service delay. */
export const CHECKSUM_FIXED_KERNEL: readonly [number, number] = [5, 7];
/** Plugin types a CNI config of ours names (flannel's are drop-in compatible). */
export const OUR_CNI_TYPES = ["tartan", "flannel"];

// ---- what the facts imply -------------------------------------------------------------

export interface Derived {
  readonly backend: BackendName | null;
  /** The backend's facts, null when the backend is unknown. */
  readonly facts: BackendFacts | null;
  readonly vni: number;
  readonly port: number;
  /** Which leases the backend programs: our VNI and the network's SubnetLen. */
  readonly scope: PeerScope;
  readonly network: Cidr | null;
  /** The overlay device the backend owns (flannel.<VNI> / tartan.<VNI>), null for host-gw and alloc. */
  readonly overlay: string | null;
  /** Bytes the backend's encapsulation adds on the underlay. */
  readonly overhead: number;
  /** The MTU the overlay (and pods) must have (dual-stack vxlan: what fits IPv6 too); null when unknown. */
  readonly podMtu: number | null;
  readonly own: Lease | null;
  /** Remote leases this node's backend programs. */
  readonly peers: readonly Lease[];
  /** Remote leases it leaves alone (another backend or VNI). */
  readonly foreign: readonly Lease[];
}

export function derive(f: Facts): Derived {
  const cfg = f.config.ok ? f.config.value : null;
  const backend = f.settings.backend ?? cfg?.backend.type ?? null;
  const facts = backend ? backendFacts(backend) : null;
  const vni = cfg?.backend.vni ?? 1;
  const scope = { vni, subnetLen: cfg?.subnetLen ?? 0 };
  const underlayMtu = f.underlay.ok ? f.underlay.value.mtu : null;
  const configured = cfg?.backend.mtu ?? null;
  const own = f.ownLease;
  const remote = f.registry.ok ? f.registry.value.leases.filter((l) => l.key !== own?.key) : [];
  const isPeer = (l: Lease) => facts?.isPeer(l, scope) ?? false;
  return {
    backend,
    facts,
    vni,
    port: cfg?.backend.port ?? 8472,
    scope,
    network: cfg?.network ?? null,
    overlay: facts?.overlayDevice(vni) ?? null,
    overhead: facts?.overhead ?? 0,
    podMtu:
      facts && underlayMtu !== null
        ? (backend === "vxlan" || backend === "ebpf-vxlan") && (cfg?.ipv6 ?? null) !== null
          ? dualStackMtu(configured, underlayMtu).pods
          : podMtu(facts, configured, underlayMtu)
        : configured,
    own,
    peers: remote.filter(isPeer),
    foreign: remote.filter((l) => !isPeer(l)),
  };
}

// ---- small helpers ---------------------------------------------------------------------

export const ok = (id: string, finding: string, why: string): Check => ({
  id,
  status: "ok",
  finding,
  why,
  fix: "",
  fixable: false,
});

/** A warning that a check could not judge (`fix` empty: the reason says what to do). */
export const cannot = (id: string, finding: string, why: string, fix = ""): Check => ({
  id,
  status: "warning",
  finding,
  why,
  fix,
  fixable: false,
});

export function linkOf(f: Facts, name: string | null): LinkFacts | null {
  if (!name || !f.links.ok) return null;
  return f.links.value.find((l) => l.name === name) ?? null;
}

export function firstFew(items: readonly string[], max = 3): string {
  if (items.length <= max) return items.join("; ");
  return `${items.slice(0, max).join("; ")}; and ${items.length - max} more`;
}

/** A lease as people read it (and `tartan status` prints it): its subnet in CIDR form. */
export function leaseName(l: Lease): string {
  return formatCidr(l.subnet);
}

export const RESTART =
  "restart the agent (systemctl restart tartan): at start it rebuilds the datapath from the registry";

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
