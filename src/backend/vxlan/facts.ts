/**
 * The `vxlan` backend's facts, as flanneld has them: the kernel device `flannel.<VNI>`,
 * its overhead, the MAC it keeps across restarts, which leases it programs (vxlan ones
 * with our VNI), and the kernel entries it expects for each: a permanent neighbour
 * (VTEP address → VTEP MAC), a permanent FDB entry (VTEP MAC → PublicIP) and an onlink
 * route to the subnet via the VTEP address; with DirectRouting and a peer on our L2, a
 * plain route via its PublicIP instead. The backend, `tartan doctor` and its fixes all
 * read these. Pure.
 */
// outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: the wire's, the one the eBPF programs use too
import { VXLAN_OVERHEAD } from "../../bpf/abi.ts";
import { formatCidr, formatIp4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { BackendFacts, RouteSpec } from "../facts-shape.ts";

export function vxlanDeviceName(vni: number): string {
  return `flannel.${vni}`;
}

/** Leases a vxlan node can talk to: vxlan ones with our VNI. */
export function isVxlanPeer(lease: Lease, vni: number): boolean {
  return lease.attrs.backendType === "vxlan" && lease.attrs.vxlan !== null && lease.attrs.vxlan.VNI === vni;
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

export interface VxlanPlanInput {
  /** flannel.<VNI> */
  readonly device: string;
  /** the underlay interface, for DirectRouting routes */
  readonly extIface: string;
  /** DirectRouting: is this PublicIP on our L2 (no gateway on the route to it)? */
  readonly direct: (lease: Lease) => boolean;
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
