/**
 * The `ebpf-vxlan` backend's facts: the overlay device `tartan.<VNI>` and its inert peer,
 * the VTEP MAC a node keeps across restarts (derived from its name and address), where
 * the maps and programs are pinned under --bpffs, which leases it programs (vxlan ones
 * with our VNI and the network's SubnetLen), and what the kernel holds for them: one
 * subnet-map entry per peer lease, one member-map entry per peer node (counting its
 * leases), the cluster route via the overlay device, and the programs on the underlay,
 * the overlay device and the pod bridge. The backend, `tartan doctor` and the CNI
 * plugin all read these. Pure.
 */
import { createHash } from "node:crypto";
import {
  MAPS,
  PROGRAMS,
  type Subnet6Key,
  type Subnet6Value,
  type SubnetKey,
  type SubnetValue,
  VXLAN_OVERHEAD,
} from "../../bpf/abi.ts";
import { type Cidr, formatCidr, formatIp4, type Ip4 } from "../../config/cidr.ts";
import { type Cidr6, formatCidr6, formatIp6, type Ip6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { BackendFacts, PeerScope, RouteSpec } from "../facts-shape.ts";

/** The overlay device: one per VNI, like flannel.<VNI>. */
export function overlayDeviceName(vni: number): string {
  return `tartan.${vni}`;
}

/** The overlay device's inert veth peer (names are at most 15 bytes). */
export function overlayPeerName(vni: number): string {
  return `tpeer.${vni}`;
}

/**
 * A stable, locally administered unicast MAC for this node's VTEP: the same node
 * name and address give the same MAC after any restart, so peers' maps stay right.
 */
export function vtepMacFor(nodeName: string, publicIp: Ip4): string {
  const h = createHash("sha256")
    .update(`tartan-vtep\0${nodeName}\0${formatIp4(publicIp)}`)
    .digest();
  h[0] = (h[0]! & 0xfe) | 0x02;
  return Array.from(h.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

// ---- pins ------------------------------------------------------------------------------

export type MapName = keyof typeof MAPS;
export type ProgramName = keyof typeof PROGRAMS;

export function mapPinDir(bpffs: string): string {
  return `${bpffs}/maps`;
}

export function mapPin(bpffs: string, map: MapName): string {
  return `${mapPinDir(bpffs)}/${MAPS[map]}`;
}

export function programPin(bpffs: string, prog: ProgramName): string {
  return `${bpffs}/progs/${PROGRAMS[prog]}`;
}

// ---- which leases, and what the maps hold for them --------------------------------------

export function subnetKeyOf(c: Cidr): SubnetKey {
  return { prefixLen: c.len, addr: c.ip };
}

export type RemoteEntry = { key: SubnetKey; value: SubnetValue };

/**
 * The subnet-map entry for a remote lease, or the reason it cannot be reached over
 * VXLAN from here (no VTEP MAC, another VNI, or a prefix length other than the
 * network's SubnetLen: the map is an exact-match hash on {SubnetLen, addr & mask}).
 */
export function remoteEntry(lease: Lease, vni: number, subnetLen: number): RemoteEntry | { skip: string } {
  const vx = lease.attrs.vxlan;
  if (lease.attrs.backendType !== "vxlan" || !vx)
    return { skip: `backend type ${lease.attrs.backendType || "none"} is not vxlan` };
  if (vx.VNI !== vni) return { skip: `VNI ${vx.VNI} differs from ours (${vni})` };
  if (lease.subnet.len !== subnetLen)
    return { skip: `prefix length /${lease.subnet.len} differs from the network's SubnetLen /${subnetLen}` };
  return {
    key: subnetKeyOf(lease.subnet),
    value: { nodeIp: lease.attrs.publicIp, vtepMac: vx.VtepMAC, flags: 0 },
  };
}

export function subnet6KeyOf(c: Cidr6): Subnet6Key {
  return { prefixLen: c.len, addr: c.ip };
}

export type RemoteEntry6 = { key: Subnet6Key; value: Subnet6Value };

/**
 * Dual stack: the tartan_subnets6 entry for a remote lease's IPv6 side (its IPv6 subnet,
 * PublicIPv6 and BackendV6Data, as flanneld's flannel-v6 programs it); null for a lease
 * without one (an IPv4-only node: its IPv4 side still counts), or the reason it cannot
 * be reached.
 */
export function remoteEntry6(
  lease: Lease,
  vni: number,
  subnet6Len: number,
): RemoteEntry6 | { skip: string } | null {
  const sn6 = lease.subnet6 ?? null;
  const pub6 = lease.attrs.publicIpv6 ?? null;
  const vx6 = lease.attrs.vxlan6 ?? null;
  if (sn6 === null || pub6 === null || vx6 === null) return null;
  if (lease.attrs.backendType !== "vxlan")
    return { skip: `backend type ${lease.attrs.backendType} is not vxlan` };
  if (vx6.VNI !== vni) return { skip: `IPv6 VNI ${vx6.VNI} differs from ours (${vni})` };
  if (sn6.len !== subnet6Len)
    return { skip: `IPv6 prefix length /${sn6.len} differs from the network's IPv6SubnetLen /${subnet6Len}` };
  return { key: subnet6KeyOf(sn6), value: { nodeIp6: pub6, vtepMac: vx6.VtepMAC, flags: 0 } };
}

/** What tartan_subnets6 holds for remote leases (the local entry aside), by IPv6 subnet address. */
export function expectedSubnets6(
  peers: readonly Lease[],
  vni: number,
  subnet6Len: number,
): Map<Ip6, Subnet6Value> {
  const out = new Map<Ip6, Subnet6Value>();
  for (const l of peers) {
    const r = remoteEntry6(l, vni, subnet6Len);
    if (r !== null && !("skip" in r)) out.set(r.key.addr, r.value);
  }
  return out;
}

export const EBPF_VXLAN_FACTS: BackendFacts = {
  name: "ebpf-vxlan",
  overhead: VXLAN_OVERHEAD,
  overlayDevice: overlayDeviceName,
  isPeer: (lease, scope) => !("skip" in remoteEntry(lease, scope.vni, scope.subnetLen)),
};

/** What the subnet map holds for remote leases (the local entry aside), by subnet address. */
export function expectedSubnets(peers: readonly Lease[], scope: PeerScope): Map<Ip4, SubnetValue> {
  const out = new Map<Ip4, SubnetValue>();
  for (const l of peers) {
    const r = remoteEntry(l, scope.vni, scope.subnetLen);
    if (!("skip" in r)) out.set(r.key.addr, r.value);
  }
  return out;
}

/** What the member map holds: the number of programmed leases per node IP. */
export function expectedMembers(subnets: ReadonlyMap<Ip4, SubnetValue>): Map<Ip4, number> {
  const out = new Map<Ip4, number>();
  for (const v of subnets.values()) out.set(v.nodeIp, (out.get(v.nodeIp) ?? 0) + 1);
  return out;
}

// ---- the overlay device and the programs ------------------------------------------------

/** The slow path: the whole cluster network via the overlay device (host traffic, traffic before a program). */
export function overlayRoute(network: Cidr, vni: number): RouteSpec {
  return {
    dst: formatCidr(network),
    gateway: formatIp4(network.ip),
    dev: overlayDeviceName(vni),
    onlink: true,
  };
}

/** Dual stack: the IPv6 network via the overlay device (host traffic, GSO packets, too big: ICMPv6 packet-too-big). */
export function overlayRoute6(network6: Cidr6, vni: number): RouteSpec {
  return {
    dst: formatCidr6(network6),
    gateway: formatIp6(network6.ip),
    dev: overlayDeviceName(vni),
    onlink: true,
  };
}

export type Hook = "tc-ingress" | "tc-egress" | "xdp";

/** Where a program must run: on `iface` at one of `hooks`, one of `programs` (full names). */
export interface ExpectedAttachment {
  /** What it does there, for people: "decap", "host encap", "pod encap". */
  readonly role: string;
  readonly iface: string;
  readonly hooks: readonly Hook[];
  readonly programs: readonly string[];
}

/** Decap on the underlay (TC or XDP), host encap on the overlay device, pod encap on the bridge when it exists. */
export function expectedAttachments(o: {
  underlay: string | null;
  overlay: string;
  bridge: string | null;
}): ExpectedAttachment[] {
  const out: ExpectedAttachment[] = [];
  if (o.underlay)
    out.push({
      role: "decap",
      iface: o.underlay,
      hooks: ["tc-ingress", "xdp"],
      programs: [PROGRAMS.decapTc, PROGRAMS.decapXdp],
    });
  out.push({ role: "host encap", iface: o.overlay, hooks: ["tc-egress"], programs: [PROGRAMS.encapHost] });
  if (o.bridge)
    out.push({ role: "pod encap", iface: o.bridge, hooks: ["tc-ingress"], programs: [PROGRAMS.encapFwd] });
  return out;
}

/** The kernel keeps 15 characters of a program's name: does `shown` name program `full`? */
export function namesProgram(shown: string, full: string): boolean {
  return shown === full || (shown.length >= 15 && full.startsWith(shown));
}
