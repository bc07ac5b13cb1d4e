/**
 * What each backend is, as data the backends, doctor's checks and doctor's fixes share
 * instead of re-deriving it: the device it owns, the bytes its encapsulation costs, the
 * MTU pods get, which remote leases it programs. Each backend's own facts (names, the
 * kernel entries it expects for a set of leases) live beside it in <backend>/facts.ts;
 * this module picks among them by name. Pure.
 */
import type { BackendName } from "../config/network.ts";
import type { Lease } from "../lease/lease.ts";
import { EBPF_VXLAN_FACTS } from "./ebpf-vxlan/facts.ts";
import type { BackendFacts } from "./facts-shape.ts";
import { HOST_GW_FACTS } from "./host-gw/facts.ts";
import { VXLAN_FACTS } from "./vxlan/facts.ts";

export type { BackendFacts, PeerScope, RouteSpec } from "./facts-shape.ts";
export { DEFAULT_BRIDGE, routeArgs, routeLine, vtepAddress, vtepAddress6 } from "./facts-shape.ts";

/** flannel's `alloc`: holds a lease, programs nothing, pods get the underlay's MTU. */
const ALLOC_FACTS: BackendFacts = {
  name: "alloc",
  overhead: 0,
  overlayDevice: () => null,
  isPeer: (_lease: Lease) => false,
};

const BY_NAME: Readonly<Record<BackendName, BackendFacts>> = {
  "ebpf-vxlan": EBPF_VXLAN_FACTS,
  vxlan: VXLAN_FACTS,
  "host-gw": HOST_GW_FACTS,
  alloc: ALLOC_FACTS,
};

export function backendFacts(name: BackendName): BackendFacts {
  return BY_NAME[name];
}

/** The MTU pods get (subnet.env's FLANNEL_MTU): Backend.MTU when set, else the underlay's minus the overhead. */
export function podMtu(f: BackendFacts, configured: number | null, underlayMtu: number): number {
  return configured ?? underlayMtu - f.overhead;
}
