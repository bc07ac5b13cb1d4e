/**
 * The `host-gw` backend's facts, as flanneld has them: no device and no overhead (pods
 * get the underlay's MTU), it programs host-gw leases only, and for each the kernel
 * holds one route to the subnet via the peer's PublicIP on the underlay. Pure.
 */
import { formatCidr, formatIp4 } from "../../config/cidr.ts";
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
