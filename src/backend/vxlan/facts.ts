/**
 * The `vxlan` backend's facts, as flanneld has them: the kernel device `flannel.<VNI>`,
 * its overhead, the MAC it keeps across restarts, which leases it programs (vxlan ones
 * with our VNI), and the kernel entries it expects for each: a permanent neighbour
 * (VTEP address → VTEP MAC), a permanent FDB entry (VTEP MAC → PublicIP) and an onlink
 * route to the subnet via the VTEP address; with DirectRouting and a peer on our L2, a
 * plain route via its PublicIP instead. Dual stack doubles it: `flannel-v6.<VNI>` on the
 * IPv6 underlay, the same three entries per peer from its IPv6 subnet, BackendV6Data and
 * PublicIPv6. The backend, `tartan doctor` and its fixes all read these. Pure.
 */
// outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: the wire's, the one the eBPF programs use too
import { VXLAN_OVERHEAD } from "../../bpf/abi.ts";
import { formatCidr, formatIp4 } from "../../config/cidr.ts";
import { formatCidr6, formatIp6, type Ip6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { BackendFacts, RouteSpec } from "../facts-shape.ts";

export function vxlanDeviceName(vni: number): string {
  return `flannel.${vni}`;
}

/**
 * IPv6 VXLAN's overhead: outer IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14. The kernel
 * caps an IPv6 vxlan device at underlay MTU − 70 (flanneld still writes − 50 to
 * subnet.env: flannel issue #1781).
 */
export const VXLAN6_OVERHEAD = 70;

/**
 * The pods' MTU and the IPv6 device's on a dual-stack vxlan node: IPv6 VXLAN costs 20 bytes
 * more and the kernel caps the IPv6 device at underlay − 70, so pods get the smaller of the
 * two families' MTUs (flanneld writes underlay − 50, and IPv6 packets between the two
 * sizes are dropped: flannel issue #1781). Backend.MTU, when set, is the pods' MTU as
 * always; the IPv6 device still cannot exceed what the kernel allows.
 */
export function dualStackMtu(
  configured: number | null,
  underlayMtu: number,
): { pods: number; device6: number } {
  const max6 = underlayMtu - VXLAN6_OVERHEAD;
  const pods = configured ?? Math.min(underlayMtu - VXLAN_OVERHEAD, max6);
  return { pods, device6: Math.min(pods, max6) };
}

export function vxlan6DeviceName(vni: number): string {
  return `flannel-v6.${vni}`;
}

/** Leases a vxlan node can talk to: vxlan ones with our VNI. */
export function isVxlanPeer(lease: Lease, vni: number): boolean {
  return lease.attrs.backendType === "vxlan" && lease.attrs.vxlan !== null && lease.attrs.vxlan.VNI === vni;
}

/** Leases whose IPv6 side a dual-stack vxlan node can reach: an IPv6 subnet, PublicIPv6 and BackendV6Data with our VNI. */
export function isVxlan6Peer(lease: Lease, vni: number): boolean {
  const a = lease.attrs;
  return (
    a.backendType === "vxlan" &&
    (lease.subnet6 ?? null) !== null &&
    (a.publicIpv6 ?? null) !== null &&
    (a.vxlan6 ?? null) !== null &&
    a.vxlan6!.VNI === vni
  );
}

export const VXLAN_FACTS: BackendFacts = {
  name: "vxlan",
  overhead: VXLAN_OVERHEAD,
  overlayDevice: vxlanDeviceName,
  isPeer: (lease, scope) => isVxlanPeer(lease, scope.vni),
};

/** A stable, locally administered unicast MAC for our VTEP, derived from the node's public IP and VNI. */
export function stableVtepMac(publicIp: number, vni: number): string {
  const b = [
    0x0e,
    ((vni >>> 8) & 0xff) ^ 0x7a,
    vni & 0xff,
    (publicIp >>> 16) & 0xff,
    (publicIp >>> 8) & 0xff,
    publicIp & 0xff,
  ];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The IPv6 device's MAC: stable like the IPv4 one, from the PublicIPv6, and never equal to it. */
export function stableVtepMac6(publicIpv6: Ip6, vni: number): string {
  const low = Number(publicIpv6 & 0xffffffn);
  const b = [
    0x0e,
    ((vni >>> 8) & 0xff) ^ 0x76,
    vni & 0xff,
    (low >>> 16) & 0xff,
    (low >>> 8) & 0xff,
    low & 0xff,
  ];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export interface VxlanPlanInput {
  /** flannel.<VNI> */
  readonly device: string;
  /** the underlay interface, for DirectRouting routes */
  readonly extIface: string;
  /** DirectRouting: is this PublicIP on our L2 (no gateway on the route to it)? */
  readonly direct: (lease: Lease) => boolean;
  /** Dual stack: the IPv6 side (flannel-v6.<VNI>); absent in an IPv4-only network. */
  readonly v6?: {
    readonly device: string;
    /** DirectRouting: is this PublicIPv6 on our L2? */
    readonly direct: (lease: Lease) => boolean;
  };
}

export interface NeighSpec {
  readonly dst: string;
  readonly lladdr: string;
  readonly dev: string;
}

export interface FdbSpec {
  readonly mac: string;
  readonly dev: string;
  /** The remote node's PublicIP. */
  readonly dst: string;
}

/** The kernel entries one peer lease needs: neighbour and FDB entry are null for a DirectRouting route. */
export interface VxlanEntries {
  readonly route: RouteSpec;
  readonly neigh: NeighSpec | null;
  readonly fdb: FdbSpec | null;
}

export function expectedEntries(lease: Lease, p: VxlanPlanInput): VxlanEntries {
  const dst = formatCidr(lease.subnet);
  const pub = formatIp4(lease.attrs.publicIp);
  if (p.direct(lease))
    return { route: { dst, gateway: pub, dev: p.extIface, onlink: false }, neigh: null, fdb: null };
  const vtep = formatIp4(lease.subnet.ip);
  const mac = lease.attrs.vxlan?.VtepMAC ?? null;
  return {
    route: { dst, gateway: vtep, dev: p.device, onlink: true },
    neigh: mac === null ? null : { dst: vtep, lladdr: mac, dev: p.device },
    fdb: mac === null ? null : { mac, dev: p.device, dst: pub },
  };
}

/** The IPv6 entries of a dual-stack peer (as expectedEntries, from its IPv6 subnet, BackendV6Data and PublicIPv6). */
export function expectedEntries6(lease: Lease, p: VxlanPlanInput): VxlanEntries | null {
  const sn6 = lease.subnet6 ?? null;
  const pub6 = lease.attrs.publicIpv6 ?? null;
  if (!p.v6 || sn6 === null || pub6 === null) return null;
  const dst = formatCidr6(sn6);
  const pub = formatIp6(pub6);
  if (p.v6.direct(lease))
    return { route: { dst, gateway: pub, dev: p.extIface, onlink: false }, neigh: null, fdb: null };
  const vtep = formatIp6(sn6.ip);
  const mac = lease.attrs.vxlan6?.VtepMAC ?? null;
  return {
    route: { dst, gateway: vtep, dev: p.v6.device, onlink: true },
    neigh: mac === null ? null : { dst: vtep, lladdr: mac, dev: p.v6.device },
    fdb: mac === null ? null : { mac, dev: p.v6.device, dst: pub },
  };
}
