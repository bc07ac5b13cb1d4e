/**
 * Doctor's checks of a dual-stack node's IPv6 side (flannel's EnableIPv6): IPv6
 * forwarding, the IPv6 overlay device as flanneld makes it (vxlan: flannel-v6.<VNI>;
 * ebpf-vxlan: IPv6 on tartan.<VNI> with the IPv6 network's route), an IPv6 route (and
 * neighbour and FDB entry) for every dual-stack peer — on ebpf-vxlan its entry in
 * tartan_subnets6 and its node in tartan_members6 — and the ip6 masquerading table. On
 * an IPv4-only network each says so and passes. Pure.
 */
import { overlayRoute6, remoteEntry6 } from "../../backend/ebpf-vxlan/facts.ts";
import { routeLine, vtepAddress6 } from "../../backend/facts.ts";
import { hostGwRoute6 } from "../../backend/host-gw/facts.ts";
import {
  dualStackMtu,
  expectedEntries6,
  isVxlan6Peer,
  type VxlanPlanInput,
  vxlan6DeviceName,
} from "../../backend/vxlan/facts.ts";
import { MAPS } from "../../bpf/abi.ts";
import { formatCidr6, formatIp6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import { NFT_TABLE } from "../../net/masq.ts";
import { routeLookup6 } from "../../net/routes.ts";
import type { Facts, Ipv6Facts } from "../facts.ts";
import { hasTable, masqueradesNetwork6 } from "../nft-rules.ts";
import { type Check, cannot, type Derived, derive, firstFew, ok, RESTART } from "./common.ts";
import { vxlanPlanInput } from "./leases.ts";

const NOT_DUAL = "the network is IPv4 only (no EnableIPv6 in the network config)";

/** The IPv6 facts when the node is dual stack; else the verdict that says it is not. */
function dual(f: Facts, id: string, why: string): Ipv6Facts | Check {
  if (!f.config.ok)
    return cannot(id, `cannot tell whether the network is dual stack: ${f.config.error}`, why);
  if (!f.config.value.ipv6 || !f.ipv6) return ok(id, NOT_DUAL, why);
  return f.ipv6;
}

const isCheck = (x: Ipv6Facts | Check): x is Check => "status" in x;

/** net.ipv6.conf.all.forwarding must be 1 on a dual-stack node. */
export function checkIpv6Forward(f: Facts): Check {
  const id = "ipv6-forward";
  const why = "with IPv6 forwarding off the node drops every IPv6 packet between pods and the overlay";
  const v6 = dual(f, id, why);
  if (isCheck(v6)) return v6;
  if (v6.forwarding === "1") return ok(id, "net.ipv6.conf.all.forwarding=1", why);
  return {
    id,
    status: "problem",
    finding: `net.ipv6.conf.all.forwarding=${v6.forwarding ?? "unreadable"}`,
    why,
    fix: "tartan doctor --fix (sysctl -w net.ipv6.conf.all.forwarding=1, after accept_ra=2 on the underlay where it is 1; persist both in /etc/sysctl.d/)",
    fixable: v6.forwarding !== null,
  };
}

/** vxlan: flannel-v6.<VNI> on the IPv6 underlay, as flanneld makes it; host-gw has no device. */
export function checkIpv6Datapath(f: Facts): Check {
  const id = "ipv6-datapath";
  const why =
    "the IPv6 overlay device carries pod IPv6 traffic to other nodes; a missing or misconfigured one black-holes it";
  const v6 = dual(f, id, why);
  if (isCheck(v6)) return v6;
  const d = derive(f);
  if (d.backend === "ebpf-vxlan") return ebpfIpv6Datapath(f, d, v6, id, why);
  if (d.backend !== "vxlan")
    return ok(id, `backend ${d.backend ?? "unknown"} has no IPv6 overlay device`, why);
  if (!v6.device.ok) return cannot(id, `cannot read the IPv6 vxlan device: ${v6.device.error}`, why);
  const dev = v6.device.value;
  if (!dev)
    return {
      id,
      status: "problem",
      finding: "the IPv6 vxlan device is missing",
      why,
      fix: RESTART,
      fixable: false,
    };
  const other: string[] = [];
  const fixable: string[] = [];
  const vx = dev.vxlan;
  if (dev.kind !== "vxlan" || vx === null)
    other.push(`${dev.name} is a ${dev.kind ?? "plain"} device, not vxlan`);
  else {
    if (vx.id !== d.vni) other.push(`${dev.name} has VNI ${vx.id}, the network config says ${d.vni}`);
    if (vx.port !== d.port)
      other.push(`${dev.name} uses UDP port ${vx.port}, the network config says ${d.port}`);
    if (v6.underlayIp !== null && vx.local6 !== v6.underlayIp)
      other.push(
        `${dev.name} has local ${vx.local6 ?? "unset"}, the underlay's IPv6 address is ${v6.underlayIp}`,
      );
    if (vx.learning !== false)
      other.push(`${dev.name} has learning on (flanneld and Tartan program the FDB)`);
  }
  const mac = d.own?.attrs.vxlan6?.VtepMAC ?? null;
  if (mac && dev.mac.toLowerCase() !== mac)
    other.push(`${dev.name} has MAC ${dev.mac}, our lease announces BackendV6Data VtepMAC ${mac}`);
  if (f.underlay.ok) {
    const want = dualStackMtu(f.config.ok ? f.config.value.backend.mtu : null, f.underlay.value.mtu).device6;
    if (dev.mtu !== want)
      fixable.push(
        `${dev.name} MTU ${dev.mtu}, should be ${want} (${f.underlay.value.name} ${f.underlay.value.mtu} − 70)`,
      );
  }
  if (!dev.up) fixable.push(`${dev.name} is down`);
  const sn6 = d.own?.subnet6 ?? null;
  if (sn6 && !dev.addrs.includes(vtepAddress6(sn6)))
    fixable.push(
      `${dev.name} lacks its address ${vtepAddress6(sn6)} (has ${dev.addrs.join(", ") || "none"})`,
    );
  const problems = [...other, ...fixable];
  if (problems.length > 0)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix:
        other.length === 0
          ? `tartan doctor --fix (ip link set ${dev.name} up, mtu, ip addr replace …)`
          : RESTART,
      fixable: other.length === 0,
      details: problems,
    };
  return ok(id, `${dev.name} up, MAC ${dev.mac}, MTU ${dev.mtu}, local ${vx?.local6}, VNI ${d.vni}`, why);
}

/** ebpf-vxlan: the overlay device carries IPv6 too (up, its IPv6 address) with the IPv6 network routed via it. */
function ebpfIpv6Datapath(f: Facts, d: Derived, v6: Ipv6Facts, id: string, why: string): Check {
  if (!v6.device.ok) return cannot(id, `cannot read the overlay device: ${v6.device.error}`, why);
  const dev = v6.device.value;
  if (!dev)
    return {
      id,
      status: "problem",
      finding: "the overlay device is missing",
      why,
      fix: RESTART,
      fixable: false,
    };
  const problems: string[] = [];
  if (!dev.up) problems.push(`${dev.name} is down`);
  const sn6 = d.own?.subnet6 ?? null;
  if (sn6 && !dev.addrs.includes(vtepAddress6(sn6)))
    problems.push(
      `${dev.name} lacks its IPv6 address ${vtepAddress6(sn6)} (has ${dev.addrs.join(", ") || "none"})`,
    );
  const net6 = f.config.ok ? (f.config.value.ipv6?.network ?? null) : null;
  if (net6 && v6.routes.ok) {
    const r = overlayRoute6(net6, d.vni);
    if (!v6.routes.value.some((x) => x.dst === r.dst && x.dev === r.dev))
      problems.push(
        `route ${routeLine(r)} is missing: IPv6 GSO packets, host traffic and packet-too-big have no way into the overlay`,
      );
  }
  if (problems.length > 0)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix: RESTART,
      fixable: false,
      details: problems,
    };
  return ok(id, `${dev.name} carries IPv6 (${dev.addrs.join(", ")}), MTU ${dev.mtu}`, why);
}

/** ebpf-vxlan: what the IPv6 maps lack for a dual-stack peer (its subnet entry as the lease says, its node as a member). */
function ebpfMissing6For(f: Facts, d: Derived, l: Lease): string[] {
  const bpf = f.bpf.ok ? f.bpf.value : null;
  const subnets6 = bpf?.subnets6;
  if (!subnets6?.ok || !f.config.ok || !f.config.value.ipv6) return [];
  const w = remoteEntry6(l, d.vni, f.config.value.ipv6.subnetLen);
  if (w === null || "skip" in w) return [];
  const name = formatCidr6({ ip: w.key.addr, len: w.key.prefixLen });
  const node = formatIp6(w.value.nodeIp6);
  const e = subnets6.value.find((x) => !x.local && x.subnet === name);
  const out: string[] = [];
  if (!e) out.push(`map ${MAPS.subnets6} entry (${node}, VTEP MAC ${w.value.vtepMac})`);
  else if (e.nodeIp !== node || e.vtepMac.toLowerCase() !== w.value.vtepMac.toLowerCase())
    out.push(
      `map ${MAPS.subnets6} entry as the lease says (${node}, ${w.value.vtepMac}; the map has ${e.nodeIp}, ${e.vtepMac})`,
    );
  if (bpf?.members6?.ok && !(node in bpf.members6.value)) out.push(`node ${node} in map ${MAPS.members6}`);
  return out;
}

/** The vxlan plan with its IPv6 side, as the backend builds it (DirectRouting from the IPv6 routes). */
export function vxlanPlanInput6(f: Facts, d: Derived): VxlanPlanInput {
  const routes = routeLookup6(f.ipv6?.routes.ok ? f.ipv6.routes.value : []);
  const directRouting = f.config.ok && f.config.value.backend.directRouting;
  return {
    ...vxlanPlanInput(f, d),
    v6: {
      device: vxlan6DeviceName(d.vni),
      direct: (l) => directRouting && routes.isDirect(l.attrs.publicIpv6!),
    },
  };
}

/** The IPv6 kernel entries a dual-stack peer needs here (vxlan: route, neighbour, FDB; host-gw: route). */
export function missing6For(f: Facts, l: Lease): string[] {
  const v6 = f.ipv6;
  const d = derive(f);
  if (!v6?.routes.ok) return [];
  const routes = v6.routes.value;
  const hasRoute = (dst: string, gateway: string, dev: string) =>
    routes.some((r) => r.dst === dst && r.gateway === gateway && r.dev === dev);
  const out: string[] = [];
  if (d.backend === "ebpf-vxlan") return ebpfMissing6For(f, d, l);
  if (d.backend === "host-gw") {
    const ul = f.underlay.ok ? f.underlay.value.name : null;
    const r = ul ? hostGwRoute6(l, ul) : null;
    if (r && routeLookup6(routes).isDirect(l.attrs.publicIpv6!) && !hasRoute(r.dst, r.gateway, r.dev))
      out.push(`route ${r.dst} via ${r.gateway} dev ${r.dev}`);
    return out;
  }
  const e = expectedEntries6(l, vxlanPlanInput6(f, d));
  if (!e) return out;
  if (!hasRoute(e.route.dst, e.route.gateway, e.route.dev))
    out.push(`route ${e.route.dst} via ${e.route.gateway} dev ${e.route.dev}`);
  const neigh = v6.neighbours.ok ? v6.neighbours.value : [];
  if (e.neigh && !neigh.some((n) => n.dst === e.neigh!.dst && n.lladdr?.toLowerCase() === e.neigh!.lladdr))
    out.push(`neighbour ${e.neigh.dst} lladdr ${e.neigh.lladdr} dev ${e.neigh.dev}`);
  const fdb = v6.fdb.ok ? v6.fdb.value : [];
  if (
    e.fdb &&
    !fdb.some((x) => x.mac.toLowerCase() === e.fdb!.mac && (x as { dst?: string }).dst === e.fdb!.dst)
  )
    out.push(`fdb ${e.fdb.mac} dst ${e.fdb.dst} dev ${e.fdb.dev}`);
  return out;
}

/** The dual-stack peers this node's backend programs in IPv6. */
export function ipv6Peers(f: Facts): Lease[] {
  const d = derive(f);
  const subnet6Len = f.config.ok ? (f.config.value.ipv6?.subnetLen ?? 0) : 0;
  return d.peers.filter((l) => {
    if (d.backend === "vxlan") return isVxlan6Peer(l, d.vni);
    if (d.backend === "ebpf-vxlan") {
      const e = remoteEntry6(l, d.vni, subnet6Len);
      return e !== null && !("skip" in e);
    }
    return d.backend === "host-gw" && (l.subnet6 ?? null) !== null && (l.attrs.publicIpv6 ?? null) !== null;
  });
}

/** Every dual-stack peer has its IPv6 route (and, with vxlan, neighbour and FDB entry). */
export function checkIpv6Routes(f: Facts): Check {
  const id = "ipv6-routes";
  const why =
    "a dual-stack peer without its IPv6 entries is unreachable over IPv6 while IPv4 works: the hardest kind of outage to see";
  const v6 = dual(f, id, why);
  if (isCheck(v6)) return v6;
  if (!v6.routes.ok) return cannot(id, `cannot read the IPv6 routes: ${v6.routes.error}`, why);
  const peers = ipv6Peers(f);
  const broken = peers.flatMap((l) =>
    missing6For(f, l).map((m) => `${formatCidr6(l.subnet6!)}: ${m} missing`),
  );
  // ebpf-vxlan's maps are the running agent's: a restart refills them (--fix does not write maps)
  const ebpf = derive(f).backend === "ebpf-vxlan";
  if (broken.length > 0)
    return {
      id,
      status: "problem",
      finding: firstFew(broken, 2),
      why,
      fix: ebpf
        ? RESTART
        : "tartan doctor --fix adds them (the agent re-adds them at its next change; a restart rebuilds them)",
      fixable: !ebpf,
      details: broken,
    };
  return ok(id, `${peers.length} dual-stack peer(s), every IPv6 route in place`, why);
}

/** --ip-masq on a dual-stack node ⇒ table ip6 tartan masquerades the IPv6 network. */
export function checkIpv6Masquerade(f: Facts): Check {
  const id = "ipv6-masquerade";
  const why =
    "with --ip-masq, IPv6 pods reach outside the cluster only through masquerading to the node's IPv6 address";
  const v6 = dual(f, id, why);
  if (isCheck(v6)) return v6;
  if (!f.nft.ok) return cannot(id, `cannot read the ruleset: ${f.nft.error}`, why);
  const net6 = f.config.ok ? f.config.value.ipv6!.network : null;
  const present = hasTable(f.nft.value, "ip6", NFT_TABLE);
  if (!f.settings.ipMasq)
    return present
      ? {
          id,
          status: "warning",
          finding: `table ip6 ${NFT_TABLE} is present but --ip-masq is off`,
          why: "a leftover table masquerades pod traffic nobody asked to masquerade",
          fix: `tartan doctor --fix (nft delete table ip6 ${NFT_TABLE}), or run the agent with --ip-masq`,
          fixable: true,
        }
      : ok(id, "--ip-masq is off and no table ip6 tartan exists", why);
  if (net6 && present && masqueradesNetwork6(f.nft.value, NFT_TABLE, net6))
    return ok(id, `table ip6 ${NFT_TABLE} masquerades ${formatCidr6(net6)} leaving the cluster`, why);
  return {
    id,
    status: "problem",
    finding: present
      ? `table ip6 ${NFT_TABLE} has no masquerade rule for ${net6 ? formatCidr6(net6) : "the IPv6 network"}`
      : `table ip6 ${NFT_TABLE} is missing though --ip-masq is on`,
    why,
    fix: "tartan doctor --fix re-applies it (the running agent also re-applies it within 5 s)",
    fixable: f.ownLease?.subnet6 != null,
  };
}
