/**
 * Which local pods the endpoint map should hold, pure: from a view of the pod bridge
 * (its ports, FDB and neighbours) the pods decap can deliver straight into, and given
 * what the map holds, which entries to write and which to delete. The agent's bridge
 * sync and the CNI plugin's sink build entries the same way here.
 */
import type { EndpointValue } from "../../bpf/abi.ts";
import { type Cidr, containsIp, type Ip4, parseIp4 } from "../../config/cidr.ts";
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

/**
 * Local pods the decap program can deliver straight into: pod IP (a neighbour on the
 * bridge inside our subnet) → the bridge port its MAC was learned on.
 */
export function endpointsFrom(view: BridgeView, subnet: Cidr | null): Map<Ip4, EndpointValue> {
  const out = new Map<Ip4, EndpointValue>();
  if (!subnet) return out;
  const portByName = new Map(view.ports.map((p) => [p.ifname, p]));
  const portOfMac = new Map<string, Link>();
  for (const f of view.fdb) {
    if (!f.ifname || f.flags?.includes("self") || f.state === "permanent") continue;
    const port = portByName.get(f.ifname);
    if (port && port.kind === "veth") portOfMac.set(f.mac.toLowerCase(), port);
  }
  for (const n of view.neighbours) {
    if (!n.lladdr || n.state?.some((s) => s === "FAILED" || s === "INCOMPLETE")) continue;
    const ip = parseIp4(n.dst);
    if (ip === null || !containsIp(subnet, ip)) continue;
    const port = portOfMac.get(n.lladdr.toLowerCase());
    if (!port) continue;
    out.set(ip, endpointValue(port.ifindex, n.lladdr, view.bridge.address));
  }
  return out;
}

export interface EndpointPlan {
  readonly deletes: readonly Ip4[];
  readonly writes: ReadonlyArray<readonly [Ip4, EndpointValue]>;
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
  const want = endpointsFrom(view, subnet);
  const deletes: Ip4[] = [];
  if (subnet !== null) {
    const portIndexes = new Set(view.ports.map((p) => p.ifindex));
    for (const [ip4, v] of current) {
      const cniKept = portIndexes.has(v.ifindex) && containsIp(subnet, ip4);
      if (!want.has(ip4) && !cniKept) deletes.push(ip4);
    }
  }
  const have = new Map(current);
  const writes: Array<readonly [Ip4, EndpointValue]> = [];
  for (const [ip4, v] of want) {
    const cur = have.get(ip4);
    if (!cur || cur.ifindex !== v.ifindex || cur.podMac !== v.podMac || cur.gwMac !== v.gwMac)
      writes.push([ip4, v]);
  }
  return { deletes, writes };
}
