/**
 * What flanneld programs for the vxlan backend, as `ip -batch` and `bridge -batch`
 * lines: per remote lease a permanent neighbour (VTEP address → VTEP MAC), a permanent
 * FDB entry (VTEP MAC → PublicIP) and an onlink route to its subnet via its VTEP
 * address; with DirectRouting and a peer on our L2, a plain route via its PublicIP
 * instead. Pure, so the exact commands are unit-tested.
 */
import { formatCidr, formatIp4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";

export interface VxlanPlanInput {
  /** flannel.<VNI> */
  readonly device: string;
  /** the underlay interface, for DirectRouting routes */
  readonly extIface: string;
  /** DirectRouting: is this PublicIP on our L2 (no gateway on the route to it)? */
  readonly direct: (lease: Lease) => boolean;
}

export interface BatchLines {
  /** `ip -batch` lines */
  readonly ip: string[];
  /** `bridge -batch` lines */
  readonly bridge: string[];
}

/** Leases a vxlan node can talk to: vxlan ones with our VNI. */
export function isVxlanPeer(lease: Lease, vni: number): boolean {
  return lease.attrs.backendType === "vxlan" && lease.attrs.vxlan !== null && lease.attrs.vxlan.VNI === vni;
}

export function addLines(leases: readonly Lease[], p: VxlanPlanInput): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases) {
    const subnet = formatCidr(l.subnet);
    if (p.direct(l)) {
      ip.push(`route replace ${subnet} via ${formatIp4(l.attrs.publicIp)} dev ${p.extIface}`);
      continue;
    }
    const vtep = formatIp4(l.subnet.ip);
    const mac = l.attrs.vxlan!.VtepMAC;
    ip.push(`neigh replace ${vtep} lladdr ${mac} dev ${p.device} nud permanent`);
    bridge.push(`fdb replace ${mac} dev ${p.device} dst ${formatIp4(l.attrs.publicIp)} self permanent`);
    ip.push(`route replace ${subnet} via ${vtep} dev ${p.device} onlink`);
  }
  return { ip, bridge };
}

/** Removal of what addLines programmed for these (previously programmed) leases. */
export function removeLines(leases: readonly Lease[], p: VxlanPlanInput): BatchLines {
  const ip: string[] = [];
  const bridge: string[] = [];
  for (const l of leases) {
    const subnet = formatCidr(l.subnet);
    if (p.direct(l)) {
      ip.push(`route del ${subnet} via ${formatIp4(l.attrs.publicIp)} dev ${p.extIface}`);
      continue;
    }
    ip.push(`route del ${subnet} dev ${p.device}`);
    ip.push(`neigh del ${formatIp4(l.subnet.ip)} dev ${p.device}`);
    if (l.attrs.vxlan)
      bridge.push(`fdb del ${l.attrs.vxlan.VtepMAC} dev ${p.device} dst ${formatIp4(l.attrs.publicIp)} self`);
  }
  return { ip, bridge };
}

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
