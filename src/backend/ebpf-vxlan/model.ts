/**
 * The pure part of the ebpf-vxlan backend: the VTEP MAC a node keeps across restarts
 * (derived from its name and address), the overlay device's name, what a lease puts
 * into the subnet and member maps, and which local pods the endpoint map should hold
 * given the bridge's ports, FDB and neighbours. No I/O.
 */
import { createHash } from "node:crypto";
import type { EndpointValue, SubnetKey, SubnetValue } from "../../bpf/abi.ts";
import { type Cidr, containsIp, formatIp4, type Ip4, parseIp4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { FdbEntry, Link, Neigh } from "../../net/ip.ts";

/** The bridge pods hang off (the CNI bridge plugin's default). */
export const DEFAULT_BRIDGE = "cni0";

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

export interface BridgeView {
  readonly bridge: Link;
  readonly ports: readonly Link[];
  readonly fdb: readonly FdbEntry[];
  readonly neighbours: readonly Neigh[];
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
    out.set(ip, {
      ifindex: port.ifindex,
      podMac: n.lladdr.toLowerCase(),
      gwMac: view.bridge.address.toLowerCase(),
    });
  }
  return out;
}
