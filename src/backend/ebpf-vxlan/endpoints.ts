/**
 * Which local pods the endpoint map should hold, pure: from a view of the pod bridge
 * (its ports, FDB and neighbours) the pods decap can deliver straight into, and given
 * what the map holds, which entries to write and which to delete. The agent's bridge
 * sync and the CNI plugin's sink build entries the same way here.
 */
import type { EndpointValue } from "../../bpf/abi.ts";
import { type Cidr, containsIp, type Ip4, parseIp4 } from "../../config/cidr.ts";
import { type Cidr6, containsIp6, type Ip6, parseIp6 } from "../../config/cidr6.ts";
import type { FdbEntry, Link, Neigh } from "../../net/ip.ts";

/** The pod bridge as one read of it sees it. */
export interface BridgeView {
  readonly bridge: Link;
  readonly ports: readonly Link[];
  readonly fdb: readonly FdbEntry[];
  readonly neighbours: readonly Neigh[];
}

/** The endpoint-map value for a pod behind host-side veth `ifindex` on a bridge with MAC `bridgeMac`. */
export function endpointValue(ifindex: number, podMac: string, bridgeMac: string): EndpointValue {
  return { ifindex, podMac: podMac.toLowerCase(), gwMac: bridgeMac.toLowerCase() };
}

/** One address family's side of the endpoint maps: how a neighbour's address reads, and what is ours. */
interface Family<A> {
  parse(dst: string): A | null;
  contains(ip: A): boolean;
}

const v4 = (subnet: Cidr): Family<Ip4> => ({ parse: parseIp4, contains: (ip) => containsIp(subnet, ip) });
const v6 = (subnet6: Cidr6): Family<Ip6> => ({
  parse: (dst) => (dst.includes(":") ? parseIp6(dst) : null),
  contains: (ip) => containsIp6(subnet6, ip),
});

/** Pod address (a neighbour on the bridge inside our subnet) → the bridge port its MAC was learned on. */
function endpointsOf<A>(view: BridgeView, fam: Family<A>): Map<A, EndpointValue> {
  const out = new Map<A, EndpointValue>();
  const portByName = new Map(view.ports.map((p) => [p.ifname, p]));
  const portOfMac = new Map<string, Link>();
  for (const f of view.fdb) {
    if (!f.ifname || f.flags?.includes("self") || f.state === "permanent") continue;
    const port = portByName.get(f.ifname);
    if (port && port.kind === "veth") portOfMac.set(f.mac.toLowerCase(), port);
  }
  for (const n of view.neighbours) {
    if (!n.lladdr || n.state?.some((s) => s === "FAILED" || s === "INCOMPLETE")) continue;
    const ip = fam.parse(n.dst);
    if (ip === null || !fam.contains(ip)) continue;
    const port = portOfMac.get(n.lladdr.toLowerCase());
    if (!port) continue;
    out.set(ip, endpointValue(port.ifindex, n.lladdr, view.bridge.address));
  }
  return out;
}

/**
 * Local pods the decap program can deliver straight into: pod IP (a neighbour on the
 * bridge inside our subnet) → the bridge port its MAC was learned on.
 */
export function endpointsFrom(view: BridgeView, subnet: Cidr | null): Map<Ip4, EndpointValue> {
  return subnet ? endpointsOf(view, v4(subnet)) : new Map();
}

export interface EndpointPlan<A = Ip4> {
  readonly deletes: readonly A[];
  readonly writes: ReadonlyArray<readonly [A, EndpointValue]>;
}

function planOf<A>(
  current: ReadonlyArray<readonly [A, EndpointValue]>,
  view: BridgeView,
  fam: Family<A> | null,
): EndpointPlan<A> {
  const want = fam ? endpointsOf(view, fam) : new Map<A, EndpointValue>();
  const deletes: A[] = [];
  if (fam !== null) {
    const portIndexes = new Set(view.ports.map((p) => p.ifindex));
    for (const [ip, v] of current) {
      const cniKept = portIndexes.has(v.ifindex) && fam.contains(ip);
      if (!want.has(ip) && !cniKept) deletes.push(ip);
    }
  }
  const have = new Map(current);
  const writes: Array<readonly [A, EndpointValue]> = [];
  for (const [ip, v] of want) {
    const cur = have.get(ip);
    if (!cur || cur.ifindex !== v.ifindex || cur.podMac !== v.podMac || cur.gwMac !== v.gwMac)
      writes.push([ip, v]);
  }
  return { deletes, writes };
}

/**
 * Brings the endpoint map (`current`) to the pods `view` shows. Entries the CNI plugin
 * wrote for pods that have not talked yet stay while their veth is still a port of the
 * bridge and the IP is in our subnet; anything else not seen goes. Before our subnet is
 * known (`subnet` null: a restart, between prepare and setLocal) nothing is deleted:
 * emptying the map then would send live pod traffic the slow way for a moment.
 */
export function planEndpoints(
  current: ReadonlyArray<readonly [Ip4, EndpointValue]>,
  view: BridgeView,
  subnet: Cidr | null,
): EndpointPlan {
  return planOf(current, view, subnet ? v4(subnet) : null);
}

/** Dual stack: planEndpoints for tartan_endpoints6, from the pods' IPv6 neighbours on the bridge in our IPv6 subnet. */
export function planEndpoints6(
  current: ReadonlyArray<readonly [Ip6, EndpointValue]>,
  view: BridgeView,
  subnet6: Cidr6 | null,
): EndpointPlan<Ip6> {
  return planOf(current, view, subnet6 ? v6(subnet6) : null);
}
