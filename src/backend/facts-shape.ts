/**
 * The shape every backend's facts take (see facts.ts), and the small facts they share:
 * the pod bridge and a route as the kernel should hold it. Pure; kept apart from facts.ts
 * so each backend's facts module can use it without importing the others.
 */
import { type Cidr, formatIp4 } from "../config/cidr.ts";
import { type Cidr6, formatIp6 } from "../config/cidr6.ts";
import type { BackendName } from "../config/network.ts";
import type { Lease } from "../lease/lease.ts";

/** The bridge pods hang off: the CNI bridge plugin's default, flannel's `cni0`. */
export const DEFAULT_BRIDGE = "cni0";

/** What decides whether a remote lease is one a backend can program. */
export interface PeerScope {
  readonly vni: number;
  /** The network's SubnetLen. */
  readonly subnetLen: number;
}

export interface BackendFacts {
  readonly name: BackendName;
  /** Bytes the encapsulation adds on the underlay (0: none). */
  readonly overhead: number;
  /** The device the backend owns for this VNI, null when it owns none. */
  overlayDevice(vni: number): string | null;
  /** Is this remote lease one the backend programs? The others are left alone by design. */
  isPeer(lease: Lease, scope: PeerScope): boolean;
}

/** A route as a backend programs it (`ip route replace <routeLine>`; iproute2 tells the family from the addresses). */
export interface RouteSpec {
  /** a.b.c.d/len, or an IPv6 prefix */
  readonly dst: string;
  readonly gateway: string;
  readonly dev: string;
  readonly onlink: boolean;
}

/** The route as `ip route` arguments: DST via GATEWAY dev DEV [onlink]. */
export function routeArgs(r: RouteSpec): string[] {
  return [r.dst, "via", r.gateway, "dev", r.dev, ...(r.onlink ? ["onlink"] : [])];
}

export function routeLine(r: RouteSpec): string {
  return routeArgs(r).join(" ");
}

/** A VXLAN device's address (flannel.<VNI>, tartan.<VNI>): its subnet's network address, /32. */
export function vtepAddress(subnet: Cidr): string {
  return `${formatIp4(subnet.ip)}/32`;
}

/** The IPv6 VXLAN device's address (flannel-v6.<VNI>): its IPv6 subnet's network address, /128, as flanneld. */
export function vtepAddress6(subnet6: Cidr6): string {
  return `${formatIp6(subnet6.ip)}/128`;
}
