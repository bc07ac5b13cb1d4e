/**
 * Doctor's checks of what the backend programmed for the other nodes: every peer lease
 * carried as the backend's facts say (routes, neighbours and FDB entries; or the eBPF
 * subnet and member maps), nothing programmed for a subnet nobody leases, and each peer
 * answering through the overlay. Pure.
 */

import { routeLine } from "../../backend/facts.ts";
import { hostGwRoute } from "../../backend/host-gw/facts.ts";
import { expectedEntries, type VxlanPlanInput } from "../../backend/vxlan/facts.ts";
import { cidrEquals, containsCidr, formatCidr, formatIp4, parseCidr } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { FdbEntry, Neigh, Route } from "../../net/ip.ts";
import { routeLookup } from "../../net/routes.ts";
import type { Facts } from "../facts.ts";
import { type Check, cannot, type Derived, derive, firstFew, leaseName, ok, RESTART } from "./common.ts";
import { ebpfLeaseProblems, ebpfStaleMapEntries } from "./ebpf.ts";

/** The vxlan backend's view of a peer as the backend programs it (DirectRouting from the config). */
export function vxlanPlanInput(f: Facts, d: Derived): VxlanPlanInput {
  const ul = f.underlay.ok ? f.underlay.value.name : null;
  const routes = routeLookup(f.routes.ok ? f.routes.value : []);
  const directRouting = f.config.ok && f.config.value.backend.directRouting;
  return {
    device: d.overlay ?? "",
    extIface: ul ?? "",
    direct: (l) => directRouting && ul !== null && routes.isDirect(l.attrs.publicIp),
  };
}

const haveRoute = (r: Route | undefined) => (r ? ` (have: via ${r.gateway ?? "-"} dev ${r.dev ?? "-"})` : "");

/**
 * The kernel tables keyed for lookups, built once per Facts: a check of 10,000 peers
 * against 10,000 routes, neighbours and FDB entries by scanning each table per peer was
 * 3·10⁸ comparisons — tens of seconds inside the agent (bench/CONTROL-PLANE.md).
 */
interface KernelIndex {
  readonly routeTo: ReadonlyMap<string, Route>;
  readonly neighbour: ReadonlyMap<string, Neigh>;
  readonly fdbByMac: ReadonlyMap<string, FdbEntry>;
  readonly plan: VxlanPlanInput;
  readonly isDirect: (ip: number) => boolean;
}

const indexes = new WeakMap<Facts, KernelIndex>();

function kernelIndex(f: Facts, d: Derived): KernelIndex {
  const known = indexes.get(f);
  if (known) return known;
  const routes = f.routes.ok ? f.routes.value : [];
  const first = <T>(items: readonly T[], key: (x: T) => string) => {
    const m = new Map<string, T>();
    for (const x of items) if (!m.has(key(x))) m.set(key(x), x);
    return m;
  };
  const lookup = routeLookup(routes);
  const index: KernelIndex = {
    routeTo: first(routes, (r) => r.dst),
    neighbour: first(f.neighbours.ok ? f.neighbours.value : [], (n) => n.dst),
    fdbByMac: first(f.fdb.ok ? f.fdb.value : [], (e) => e.mac.toLowerCase()),
    plan: vxlanPlanInput(f, d),
    isDirect: (ip) => lookup.isDirect(ip),
  };
  indexes.set(f, index);
  return index;
}

/** What the backend must have programmed for one peer lease (its facts' entries); the missing parts. */
export function missingFor(f: Facts, d: Derived, l: Lease): string[] {
  const k = kernelIndex(f, d);
  const routeTo = k.routeTo.get(leaseName(l));
  const ul = f.underlay.ok ? f.underlay.value.name : null;
  if (d.backend === "host-gw") {
    const want = hostGwRoute(l, ul ?? "");
    if (routeTo?.gateway === want.gateway && (!ul || routeTo.dev === ul)) return [];
    const spec = ul ? routeLine(want) : `${want.dst} via ${want.gateway}`;
    const direct = k.isDirect(l.attrs.publicIp);
    return [
      `route ${spec} missing${haveRoute(routeTo)}${direct ? "" : `: ${want.gateway} is not on this node's L2, host-gw cannot reach it (use vxlan)`}`,
    ];
  }
  if (d.backend !== "vxlan") return [];
  const e = expectedEntries(l, k.plan);
  const out: string[] = [];
  if (!(routeTo && routeTo.gateway === e.route.gateway && routeTo.dev === e.route.dev))
    out.push(`route ${routeLine(e.route)} missing${haveRoute(routeTo)}`);
  if (e.neigh) {
    const mac = e.neigh.lladdr.toLowerCase();
    const n = k.neighbour.get(e.neigh.dst);
    if (!n) out.push(`neigh ${e.neigh.dst} lladdr ${mac} dev ${e.neigh.dev} missing`);
    else if ((n.lladdr ?? "").toLowerCase() !== mac)
      out.push(`neigh ${e.neigh.dst} dev ${e.neigh.dev} has lladdr ${n.lladdr ?? "none"}, lease says ${mac}`);
  }
  if (e.fdb) {
    const mac = e.fdb.mac.toLowerCase();
    const entry = k.fdbByMac.get(mac);
    const dst = entry ? (entry as { dst?: string }).dst : undefined;
    if (!entry) out.push(`fdb ${mac} dev ${e.fdb.dev} dst ${e.fdb.dst} missing`);
    else if (dst !== e.fdb.dst)
      out.push(`fdb ${mac} dev ${e.fdb.dev} points at ${dst ?? "nothing"}, lease says ${e.fdb.dst}`);
  }
  return out;
}

/** The eBPF maps against the leases; from the agent's status when the maps cannot be read. */
function ebpfRemoteProblems(f: Facts, d: Derived): string[] | null {
  const fromMaps = ebpfLeaseProblems(f, d);
  if (fromMaps !== null) return fromMaps;
  if (!f.agent.ok) return null;
  const programmed = new Set(f.agent.value.status.leases.filter((l) => l.programmed).map((l) => l.subnet));
  return d.peers
    .filter((l) => !programmed.has(leaseName(l)))
    .map((l) => `lease ${leaseName(l)} (${formatIp4(l.attrs.publicIp)}) is not programmed, says the agent`);
}

/** Every remote lease is programmed (kernel entries or map). */
export function checkRemoteLeases(f: Facts): Check {
  const id = "remote-leases";
  const d = derive(f);
  const why = "a lease that is not programmed is a node this node's pods cannot reach";
  if (d.backend === null || d.backend === "alloc")
    return ok(id, `backend ${d.backend ?? "unknown"}: nothing to program`, why);
  if (!f.registry.ok) return cannot(id, "cannot check: the registry is unreachable", why);
  let problems: string[];
  if (d.backend === "ebpf-vxlan") {
    const found = ebpfRemoteProblems(f, d);
    if (found === null)
      return cannot(
        id,
        `cannot read the subnet map under ${f.settings.bpffs} (${f.bpf.ok ? (f.bpf.value.subnets.ok ? "" : f.bpf.value.subnets.error) : f.bpf.error}) and no agent answers`,
        why,
        "run doctor as root, or with the agent running",
      );
    problems = found;
  } else {
    if (!f.routes.ok) return cannot(id, `cannot read routes: ${f.routes.error}`, why);
    problems = d.peers.flatMap((l) => missingFor(f, d, l).map((m) => `lease ${leaseName(l)}: ${m}`));
  }
  const foreign = d.foreign.map(
    (l) =>
      `lease ${leaseName(l)} (${l.attrs.backendType || "no backend"}) is not programmed by ${d.backend}: by design`,
  );
  if (problems.length > 0)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix:
        d.backend === "ebpf-vxlan"
          ? RESTART
          : "tartan doctor --fix programs the missing entries from the registry",
      fixable: d.backend !== "ebpf-vxlan",
      details: [...problems, ...foreign],
    };
  return {
    ...ok(
      id,
      `${d.peers.length} remote lease(s) programmed${foreign.length ? `; ${foreign.length} of another backend skipped` : ""}`,
      why,
    ),
    ...(foreign.length ? { details: foreign } : {}),
  };
}

/** Entries inside the cluster network with no lease behind them. */
export interface StaleEntry {
  /** Kernel entries (route, neigh, fdb) --fix deletes; eBPF map entries are left to the agent. */
  readonly kind: "route" | "neigh" | "fdb" | "map";
  /** What `ip`/`bridge` would delete: "198.19.9.0/24 dev flannel.1"; for a map: "tartan_subnets 198.19.9.0/24 …". */
  readonly spec: string;
}

export function staleEntries(f: Facts): StaleEntry[] {
  const d = derive(f);
  const out: StaleEntry[] = [];
  if (!d.network || d.backend === null || d.backend === "alloc" || !f.registry.ok) return out;
  const own = d.own;
  const leased = new Set([...d.peers, ...d.foreign].map((l) => formatCidr(l.subnet)));
  const routes: readonly Route[] = f.routes.ok ? f.routes.value : [];
  for (const r of routes) {
    const c = parseCidr(r.dst.includes("/") ? r.dst : `${r.dst}/32`, false);
    if (!c || !containsCidr(d.network, c)) continue;
    if (own && cidrEquals(c, own.subnet) && !r.gateway) continue; // our pods' subnet on the bridge
    if (r.protocol === "kernel" && !r.gateway) continue; // an interface's own prefix
    if (d.backend === "ebpf-vxlan" && cidrEquals(c, d.network) && r.dev === d.overlay) continue; // the slow path
    if (leased.has(r.dst)) continue; // leased: remote-leases judges whether it is right
    out.push({
      kind: "route",
      spec: `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${r.dev ? ` dev ${r.dev}` : ""}`,
    });
  }
  if (d.backend === "vxlan" && d.overlay) {
    const vteps = new Set(d.peers.map((l) => formatIp4(l.subnet.ip)));
    const macs = new Set(d.peers.map((l) => l.attrs.vxlan!.VtepMAC.toLowerCase()));
    for (const n of f.neighbours.ok ? f.neighbours.value : [])
      if (!vteps.has(n.dst)) out.push({ kind: "neigh", spec: `${n.dst} dev ${d.overlay}` });
    for (const e of f.fdb.ok ? f.fdb.value : []) {
      if (macs.has(e.mac.toLowerCase())) continue;
      const dst = (e as { dst?: string }).dst;
      out.push({ kind: "fdb", spec: `${e.mac} dev ${d.overlay}${dst ? ` dst ${dst}` : ""} self` });
    }
  }
  if (d.backend === "ebpf-vxlan")
    for (const spec of ebpfStaleMapEntries(f, d)) out.push({ kind: "map", spec });
  return out;
}

/** Nothing programmed without a lease: stale routes, neighbours, FDB entries, map entries. */
export function checkStaleEntries(f: Facts): Check {
  const id = "stale-entries";
  const why =
    "an entry for a subnet nobody leases sends that traffic to a node that is gone, or that now has another subnet";
  const d = derive(f);
  if (!f.registry.ok) return cannot(id, "cannot check: the registry is unreachable", why);
  if (!d.network) return cannot(id, "cannot check: no network config", why);
  const stale = staleEntries(f);
  if (stale.length === 0)
    return ok(
      id,
      `no route, neighbour${d.backend === "ebpf-vxlan" ? ", FDB or map entry" : " or FDB entry"} in ${formatCidr(d.network)} without a lease`,
      why,
    );
  const items = stale.map((s) => `${s.kind} ${s.spec}`);
  const kernel = stale.filter((s) => s.kind !== "map");
  const first = kernel[0];
  const fix = first
    ? `tartan doctor --fix deletes them (${first.kind === "fdb" ? "bridge fdb del" : `ip ${first.kind} del`} ${first.spec})`
    : "";
  const maps = kernel.length < stale.length ? `map entries: ${RESTART} (it prunes them)` : "";
  return {
    id,
    status: "problem",
    finding: `no lease for ${firstFew(items, 2)}`,
    why,
    fix: [fix, maps].filter((x) => x).join("; "),
    fixable: kernel.length > 0,
    details: items,
  };
}

/** A probe through the datapath to every peer, with its round trip. */
export function checkPeers(f: Facts): Check {
  const id = "peers";
  const d = derive(f);
  const why = `pods reach other nodes only if VXLAN (UDP ${d.port}) passes between the nodes; a firewall or security group that drops it black-holes pod traffic while the nodes still ping each other`;
  if (f.probes === null) return ok(id, "not probed (--no-probe)", why);
  if (f.probes.length === 0) return ok(id, "no remote peers to probe", why);
  // the agent probes a window of its peers per run (gather.ts probeSample): say so
  const sampled =
    f.probes.length < d.peers.length
      ? `${f.probes.length} of ${d.peers.length} peers probed this run (a window that moves each run): `
      : "";
  const bad = f.probes.filter((p) => !p.ok);
  const items = f.probes.map(
    (p) =>
      `${p.target} (lease ${p.lease}, node ${p.publicIp}): ${p.ok ? `${p.rttMs?.toFixed(3)} ms` : `no answer${p.error ? ` (${p.error})` : ""}`}`,
  );
  if (bad.length)
    return {
      id,
      status: "problem",
      finding: `${sampled}${bad.length} of ${f.probes.length} peer(s) do not answer through the overlay: ${firstFew(
        bad.map((p) => `${p.target} (node ${p.publicIp})`),
        3,
      )}`,
      why,
      fix: `allow UDP ${d.port} between the nodes' addresses; on the peer, tcpdump -ni <iface> udp port ${d.port} shows whether probes arrive; run tartan doctor there too`,
      fixable: false,
      details: items,
    };
  return { ...ok(id, sampled + firstFew(items, 4), why), details: items };
}
