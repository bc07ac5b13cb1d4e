/**
 * The `host-gw` backend's facts, as flanneld has them: no device and no overhead (pods
 * get the underlay's MTU), it programs host-gw leases only, and for each the kernel
 * holds one route to the subnet via the peer's PublicIP on the underlay — and in a
 * dual-stack network one to its IPv6 subnet via its PublicIPv6. Pure.
 */
import { formatCidr, formatIp4 } from "../../config/cidr.ts";
import { formatCidr6, formatIp6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { BackendFacts, RouteSpec } from "../facts-shape.ts";

export function isHostGwPeer(lease: Lease): boolean {
  return lease.attrs.backendType === "host-gw";
}

export const HOST_GW_FACTS: BackendFacts = {
  name: "host-gw",
  overhead: 0,
  overlayDevice: () => null,
  isPeer: (lease) => isHostGwPeer(lease),
};

/** The route a peer lease needs: its subnet via its PublicIP out of the underlay. */
export function hostGwRoute(lease: Lease, underlay: string): RouteSpec {
  return {
    dst: formatCidr(lease.subnet),
    gateway: formatIp4(lease.attrs.publicIp),
    dev: underlay,
    onlink: false,
  };
}

/** The IPv6 route a dual-stack peer lease needs (its IPv6 subnet via its PublicIPv6), or null without both. */
export function hostGwRoute6(lease: Lease, underlay: string): RouteSpec | null {
  const sn6 = lease.subnet6 ?? null;
  const pub6 = lease.attrs.publicIpv6 ?? null;
  if (sn6 === null || pub6 === null) return null;
  return { dst: formatCidr6(sn6), gateway: formatIp6(pub6), dev: underlay, onlink: false };
}
