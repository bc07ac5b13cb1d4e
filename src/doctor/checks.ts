/**
 * The judging half of `tartan doctor`: one small pure function per check, from the
 * gathered facts to a verdict an operator can act on — a status, a one-line finding
 * naming the exact object (device, address, file, sysctl, rule), why it matters, and
 * the command or flag that fixes it. No I/O here: every check is unit-tested from facts.
 */
import {
  type Cidr,
  cidrEquals,
  containsCidr,
  firstHost,
  formatCidr,
  formatIp4,
  parseCidr,
} from "../config/cidr.ts";
import type { BackendName } from "../config/network.ts";
import type { Lease } from "../lease/lease.ts";
import type { Route } from "../net/ip.ts";
import { routeLookup } from "../net/routes.ts";
import type { Facts, LinkFacts } from "./facts.ts";
import {
  acceptsNetwork,
  chainName,
  droppingForwardChains,
  hasKubeProxy,
  hasTable,
  masqueradesNetwork,
} from "./nft-rules.ts";
import { LEGACY_FILTER } from "./parse.ts";

export type CheckStatus = "ok" | "warning" | "problem";

export interface Check {
  /** Stable id (the --json key and the docs' heading). */
  readonly id: string;
  readonly status: CheckStatus;
  /** One line naming the exact object. */
  readonly finding: string;
  /** Why it matters. */
  readonly why: string;
  /** The command or flag that fixes it ("" when ok). */
  readonly fix: string;
  /** `tartan doctor --fix` can repair it. */
  readonly fixable: boolean;
  /** Every object concerned, when there are several. */
  readonly details?: readonly string[];
}

/** flanneld's VXLAN overhead: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** A lease closer than this to its expiry is about to be lost. */
export const LEASE_EXPIRY_MARGIN_MS = 5 * 60_000;
/** The kernel that fixed the VXLAN checksum bug behind the 63-second Service delay. */
export const CHECKSUM_FIXED_KERNEL: readonly [number, number] = [5, 7];
export const TARTAN_MASQ_TABLE = "tartan";
/** Plugin types a CNI config of ours names (flannel's are drop-in compatible). */
export const OUR_CNI_TYPES = ["tartan", "flannel"];

// ---- what the facts imply -------------------------------------------------------------

export interface Derived {
  readonly backend: BackendName | null;
  readonly vni: number;
  readonly port: number;
  readonly network: Cidr | null;
  /** The overlay device the backend owns (flannel.<VNI> / tartan.<VNI>), null for host-gw and alloc. */
  readonly overlay: string | null;
  /** The MTU the overlay (and pods) must have; null when unknown. */
  readonly podMtu: number | null;
  readonly own: Lease | null;
  /** Remote leases this node's backend programs. */
  readonly peers: readonly Lease[];
  /** Remote leases it leaves alone (another backend or VNI). */
  readonly foreign: readonly Lease[];
}

export function overlayName(backend: BackendName | null, vni: number): string | null {
  if (backend === "vxlan") return `flannel.${vni}`;
  // the ebpf-vxlan backend's overlay device (src/backend/ebpf-vxlan/model.ts)
  if (backend === "ebpf-vxlan") return `tartan.${vni}`;
  return null;
}

export function derive(f: Facts): Derived {
  const cfg = f.config.ok ? f.config.value : null;
  const backend = f.settings.backend ?? cfg?.backend.type ?? null;
  const vni = cfg?.backend.vni ?? 1;
  const port = cfg?.backend.port ?? 8472;
  const underlayMtu = f.underlay.ok ? f.underlay.value.mtu : null;
  let podMtu: number | null = cfg?.backend.mtu ?? null;
  if (podMtu === null && underlayMtu !== null) {
    if (backend === "vxlan" || backend === "ebpf-vxlan") podMtu = underlayMtu - VXLAN_OVERHEAD;
    else if (backend === "host-gw") podMtu = underlayMtu;
  }
  const own = f.ownLease;
  const remote = f.registry.ok ? f.registry.value.leases.filter((l) => l.key !== own?.key) : [];
  const isPeer = (l: Lease) =>
    backend === "host-gw"
      ? l.attrs.backendType === "host-gw"
      : l.attrs.backendType === "vxlan" && l.attrs.vxlan !== null && l.attrs.vxlan.VNI === vni;
  return {
    backend,
    vni,
    port,
    network: cfg?.network ?? null,
    overlay: overlayName(backend, vni),
    podMtu,
    own,
    peers: backend === "alloc" ? [] : remote.filter(isPeer),
    foreign: backend === "alloc" ? remote : remote.filter((l) => !isPeer(l)),
  };
}

// ---- small helpers ---------------------------------------------------------------------

const ok = (id: string, finding: string, why: string): Check => ({
  id,
  status: "ok",
  finding,
  why,
  fix: "",
  fixable: false,
});

function linkOf(f: Facts, name: string | null): LinkFacts | null {
  if (!name || !f.links.ok) return null;
  return f.links.value.find((l) => l.name === name) ?? null;
}

function firstFew(items: readonly string[], max = 3): string {
  if (items.length <= max) return items.join("; ");
  return `${items.slice(0, max).join("; ")}; and ${items.length - max} more`;
}

const RESTART =
  "restart the agent (systemctl restart tartan): at start it rebuilds the datapath from the registry";

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

// ---- the checks ------------------------------------------------------------------------

/** Is an agent answering on --http, healthy and ready? */
export function checkAgent(f: Facts): Check {
  const id = "agent";
  const why =
    "the agent keeps the lease renewed and the datapath in step with the registry; without it the node drifts";
  if (!f.agent.ok)
    return {
      id,
      status: "warning",
      finding: `no agent answers at http://${f.settings.http} (${f.agent.error}); doctor judged from flags, the registry and the kernel`,
      why,
      fix: "start it (systemctl start tartan), or point doctor at it with --http=HOST:PORT",
      fixable: false,
    };
  const s = f.agent.value.status;
  if (!s.health.ok)
    return {
      id,
      status: "problem",
      finding: `agent ${s.node} at ${f.settings.http} is unhealthy: ${s.health.reasons.join("; ")}`,
      why,
      fix: "read the agent's log (journalctl -u tartan); the checks below name the broken part",
      fixable: false,
    };
  if (!s.ready.ok)
    return {
      id,
      status: "warning",
      finding: `agent ${s.node} at ${f.settings.http} is not ready: ${s.ready.reasons.join("; ")}`,
      why,
      fix: "wait for it, or read its log (journalctl -u tartan)",
      fixable: false,
    };
  return ok(
    id,
    `agent ${s.node} (tartan ${s.version}, backend ${s.backend ?? "-"}) is healthy and ready`,
    why,
  );
}

/** Can we read the registry, and are all records valid? */
export function checkRegistry(f: Facts): Check {
  const id = "registry";
  const why =
    "leases and the network config live there; an unreachable registry means no renewals and no new peers";
  if (!f.registry.ok)
    return {
      id,
      status: "problem",
      finding: `registry unreachable: ${f.registry.error}`,
      why,
      fix: "check --registry=sqlite:PATH or --etcd-endpoints and the --etcd-* TLS flags; `tartan leases` with the same flags shows what the agent sees",
      fixable: false,
    };
  const r = f.registry.value;
  if (!f.config.ok)
    return {
      id,
      status: "problem",
      finding: `${r.description}: no usable network config (${f.config.error})`,
      why: "without a network config no node can lease a subnet",
      fix: 'tartan config set net-conf.json (flannel\'s format, e.g. {"Network": "10.244.0.0/16"})',
      fixable: false,
    };
  if (r.invalid.length > 0) {
    const items = r.invalid.map((i) => `${i.key}: ${i.reason}`);
    return {
      id,
      status: "warning",
      finding: `${r.description}: ${r.invalid.length} invalid lease record(s): ${firstFew(items, 2)}`,
      why: "invalid records are skipped by every node: that subnet is unreachable",
      fix: "fix or delete those records (tartan leases lists them); the node that owns one re-acquires",
      fixable: false,
      details: items,
    };
  }
  return ok(id, `${r.description} answers: ${r.leases.length} valid lease(s)`, why);
}

/** Our lease: present, matching what the agent holds, not about to expire. */
export function checkLease(f: Facts): Check {
  const id = "lease";
  const why =
    "the lease is this node's claim on its pod subnet; lose it and another node may take the subnet";
  const pub = f.underlay.ok ? formatIp4(f.underlay.value.publicIp) : "this node";
  if (!f.registry.ok)
    return {
      id,
      status: "warning",
      finding: `cannot check the lease of ${pub}: the registry is unreachable`,
      why,
      fix: "fix the registry first (see the registry check)",
      fixable: false,
    };
  const own = f.ownLease;
  if (!own)
    return {
      id,
      status: "problem",
      finding: f.underlay.ok
        ? `no lease in ${f.registry.value.description} has PublicIP ${pub}`
        : `cannot find this node's lease in ${f.registry.value.description}: its PublicIP is unknown (see the underlay check)`,
      why,
      fix: "start the agent (it acquires one); if it runs, check --iface/--public-ip match what it publishes",
      fixable: false,
    };
  const agentLease = f.agent.ok ? f.agent.value.status.lease : null;
  if (agentLease && agentLease.subnet !== formatCidr(own.subnet))
    return {
      id,
      status: "problem",
      finding: `the agent holds ${agentLease.subnet} but the registry's lease for ${pub} is ${own.key}`,
      why,
      fix: RESTART,
      fixable: false,
    };
  if (own.expiresAt === null)
    return ok(id, `lease ${own.key} for ${pub} is a reservation (never expires)`, why);
  const left = own.expiresAt - f.now;
  if (left <= 0)
    return {
      id,
      status: "problem",
      finding: `lease ${own.key} for ${pub} expired ${formatDuration(-left)} ago`,
      why,
      fix: "start the agent; it renews or re-acquires the lease",
      fixable: false,
    };
  if (left < LEASE_EXPIRY_MARGIN_MS)
    return {
      id,
      status: "problem",
      finding: `lease ${own.key} for ${pub} expires in ${formatDuration(left)} (${new Date(own.expiresAt).toISOString()})`,
      why,
      fix: "check the agent is running and can write to the registry (renewals are in its log)",
      fixable: false,
    };
  return ok(id, `lease ${own.key} for ${pub}, expires in ${formatDuration(left)}`, why);
}

/** subnet.env: present, parseable, matching the lease, the MTU and --ip-masq. */
export function checkSubnetEnv(f: Facts): Check {
  const id = "subnet-env";
  const path = f.settings.subnetFile;
  const why = `the CNI plugin and Docker read ${path} to address pods; missing or wrong, pods fail to start or get another node's subnet`;
  const d = derive(f);
  const canFix = d.own !== null && d.network !== null && d.podMtu !== null;
  const fixText = canFix
    ? `tartan doctor --fix rewrites it from lease ${d.own!.key}`
    : "restart the agent; it rewrites the file from its lease";
  const bad = (finding: string): Check => ({
    id,
    status: "problem",
    finding,
    why,
    fix: fixText,
    fixable: canFix,
  });
  const e = f.subnetEnv;
  if (e.kind === "missing") return bad(`${path} is missing`);
  if (e.kind === "invalid") return bad(`${path} does not parse: ${e.reason}`);
  const env = e.env;
  if (d.network && !cidrEquals(env.network, d.network))
    return bad(
      `${path} says FLANNEL_NETWORK=${formatCidr(env.network)}, the network config says ${formatCidr(d.network)}`,
    );
  if (d.own && !cidrEquals(env.subnet, d.own.subnet))
    return bad(
      `${path} says FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}, the lease is ${d.own.key}`,
    );
  if (d.podMtu !== null && env.mtu !== d.podMtu)
    return bad(`${path} says FLANNEL_MTU=${env.mtu}, the overlay needs ${d.podMtu}`);
  if (env.ipMasq !== f.settings.ipMasq)
    return {
      id,
      status: "warning",
      finding: `${path} says FLANNEL_IPMASQ=${env.ipMasq} but --ip-masq is ${f.settings.ipMasq}`,
      why: "the CNI bridge masquerades when FLANNEL_IPMASQ is false: traffic gets masqueraded twice or not at all",
      fix: fixText,
      fixable: canFix,
    };
  return ok(
    id,
    `${path}: FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len} FLANNEL_MTU=${env.mtu} FLANNEL_IPMASQ=${env.ipMasq}`,
    why,
  );
}

/** The pod bridge carries exactly the lease's gateway address. */
export function checkBridge(f: Facts): Check {
  const id = "bridge";
  const br = f.settings.bridge;
  const why = `the CNI bridge plugin refuses every new pod when ${br} has another address ("${br} already has an IP address different from …"), and existing pods lose their gateway`;
  if (!f.links.ok)
    return {
      id,
      status: "warning",
      finding: `cannot list links: ${f.links.error}`,
      why,
      fix: "",
      fixable: false,
    };
  const link = linkOf(f, br);
  if (!link) return ok(id, `${br} does not exist yet (the CNI plugin creates it with the first pod)`, why);
  const own = f.ownLease;
  if (!own)
    return {
      id,
      status: "warning",
      finding: `${br} has ${link.addrs.join(", ") || "no address"}; no lease to compare with`,
      why,
      fix: "fix the lease first",
      fixable: false,
    };
  const want = `${formatIp4(firstHost(own.subnet))}/${own.subnet.len}`;
  const stale = link.addrs.filter((a) => a !== want);
  const fix = `tartan doctor --fix (ip addr del ${stale[0] ?? want} dev ${br}; ip addr add ${want} dev ${br})`;
  if (stale.length > 0 || !link.addrs.includes(want))
    return {
      id,
      status: "problem",
      finding: `${br} has ${link.addrs.join(", ") || "no IPv4 address"}, lease ${own.key} needs exactly ${want}`,
      why,
      fix,
      fixable: true,
      details: stale.map((a) => `stale address ${a} on ${br}`),
    };
  if (!link.up)
    return {
      id,
      status: "problem",
      finding: `${br} (${want}) is down`,
      why: "pods on a down bridge reach nothing",
      fix: `tartan doctor --fix (ip link set ${br} up)`,
      fixable: true,
    };
  return ok(id, `${br} has ${want}, the gateway of lease ${own.key}`, why);
}

/** Expected datapath: the vxlan device as flanneld makes it, or the eBPF programs and pins. */
export function checkDatapath(f: Facts): Check {
  const id = "datapath";
  const d = derive(f);
  const why =
    "the datapath carries pod traffic to other nodes; a missing or misconfigured one black-holes it";
  if (d.backend === null)
    return {
      id,
      status: "warning",
      finding: "backend unknown (no --backend, no agent, no network config)",
      why,
      fix: "give --backend=vxlan|ebpf-vxlan|host-gw",
      fixable: false,
    };
  if (d.backend === "alloc") return ok(id, "backend alloc programs nothing", why);
  if (!f.links.ok)
    return {
      id,
      status: "warning",
      finding: `cannot list links: ${f.links.error}`,
      why,
      fix: "",
      fixable: false,
    };
  const ul = f.underlay.ok ? f.underlay.value : null;
  if (d.backend === "host-gw") {
    const l = linkOf(f, ul?.name ?? null);
    if (ul && l && !l.up)
      return {
        id,
        status: "problem",
        finding: `underlay ${ul.name} is down`,
        why,
        fix: `ip link set ${ul.name} up`,
        fixable: false,
      };
    return ok(id, `host-gw routes via ${ul?.name ?? "the underlay"}; no overlay device`, why);
  }
  const dev = d.overlay!;
  const link = linkOf(f, dev);
  const mac = d.own?.attrs.vxlan?.VtepMAC ?? null;
  const problems: string[] = [];
  let fixable = true;
  const need = (cond: boolean, text: string, canFix = false) => {
    if (cond) return;
    problems.push(text);
    if (!canFix) fixable = false;
  };
  if (!link) {
    return {
      id,
      status: "problem",
      finding: `overlay device ${dev} is missing`,
      why,
      fix: RESTART,
      fixable: false,
    };
  }
  if (d.backend === "vxlan") {
    const vx = link.vxlan;
    need(link.kind === "vxlan" && vx !== null, `${dev} is a ${link.kind ?? "plain"} device, not vxlan`);
    if (vx) {
      need(vx.id === d.vni, `${dev} has VNI ${vx.id}, the network config says ${d.vni}`);
      need(vx.port === d.port, `${dev} uses UDP port ${vx.port}, the network config says ${d.port}`);
      if (ul)
        need(
          vx.local === formatIp4(ul.ifaceIp),
          `${dev} has local ${vx.local ?? "unset"}, ${ul.name} is ${formatIp4(ul.ifaceIp)}`,
        );
      need(
        vx.learning === false,
        `${dev} has learning on (flanneld and Tartan program the FDB; learning lets any sender rewrite it)`,
      );
    }
  } else {
    const bpf = f.bpf.ok ? f.bpf.value : null;
    if (!bpf) problems.push(`cannot inspect eBPF state: ${f.bpf.ok ? "" : f.bpf.error}`);
    else {
      const maps = [
        "tartan_subnets",
        "tartan_members",
        "tartan_endpoints",
        "tartan_config",
        "tartan_counters",
      ];
      const missingPins = maps.map((m) => `maps/${m}`).filter((p) => !bpf.pins.includes(p));
      need(missingPins.length === 0, `pins missing under ${f.settings.bpffs}: ${missingPins.join(", ")}`);
      // the kernel keeps 15 characters of a program's name; bpftool may show only those
      const named = (have: string, want: string) =>
        have === want || (have.length >= 15 && want.startsWith(have));
      const has = (iface: string, hook: string, names: string[]) =>
        bpf.attachments.some(
          (a) => a.iface === iface && a.hook === hook && names.some((n) => named(a.progName, n)),
        );
      if (ul) {
        const decap =
          has(ul.name, "tc-ingress", ["tartan_decap_tc"]) || has(ul.name, "xdp", ["tartan_decap_xdp"]);
        need(decap, `no decap program (tartan_decap_tc on tc ingress or tartan_decap_xdp) on ${ul.name}`);
      }
      need(
        has(dev, "tc-egress", ["tartan_encap_host"]),
        `tartan_encap_host is not attached to ${dev} tc egress`,
      );
      // an attached program that is not the pinned one was loaded by another (older) agent run
      for (const a of bpf.attachments) {
        const pinned = Object.entries(bpf.pinnedProgIds).find(([n]) => named(a.progName, n));
        if (pinned && pinned[1] !== a.progId)
          problems.push(
            `${a.iface} ${a.hook} runs ${pinned[0]} id ${a.progId}, not the pinned (running agent's) id ${pinned[1]}: an older datapath is attached`,
          );
      }
      if (linkOf(f, f.settings.bridge))
        need(
          has(f.settings.bridge, "tc-ingress", ["tartan_encap_fwd"]),
          `tartan_encap_fwd is not attached to ${f.settings.bridge} tc ingress`,
        );
    }
  }
  need(link.up, `${dev} is down`, true);
  if (mac)
    need(
      link.mac.toLowerCase() === mac.toLowerCase(),
      `${dev} has MAC ${link.mac}, lease ${d.own!.key} announces VtepMAC ${mac} (peers address frames to ${mac})`,
    );
  if (d.own) {
    const want = `${formatIp4(d.own.subnet.ip)}/32`;
    need(
      link.addrs.includes(want),
      `${dev} lacks its VTEP address ${want} (has ${link.addrs.join(", ") || "none"})`,
      true,
    );
  }
  if (problems.length > 0)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix: fixable ? `tartan doctor --fix (ip link set ${dev} up; ip addr replace …)` : RESTART,
      fixable,
      details: problems,
    };
  const extra =
    d.backend === "vxlan" ? `VNI ${d.vni}, port ${d.port}, learning off` : "programs attached, pins present";
  return ok(id, `${dev} up, MAC ${link.mac}, ${extra}`, why);
}

/** What the backend must have programmed for one peer lease; the missing parts. */
export function missingFor(f: Facts, d: Derived, l: Lease): string[] {
  const routes = f.routes.ok ? f.routes.value : [];
  const subnet = formatCidr(l.subnet);
  const pub = formatIp4(l.attrs.publicIp);
  const routeTo = routes.find((r) => r.dst === subnet);
  const ul = f.underlay.ok ? f.underlay.value.name : null;
  if (d.backend === "host-gw") {
    if (routeTo?.gateway === pub && (!ul || routeTo.dev === ul)) return [];
    const direct = routeLookup(routes).isDirect(l.attrs.publicIp);
    const have = routeTo ? ` (have: via ${routeTo.gateway ?? "-"} dev ${routeTo.dev ?? "-"})` : "";
    return [
      `route ${subnet} via ${pub}${ul ? ` dev ${ul}` : ""} missing${have}${direct ? "" : `: ${pub} is not on this node's L2, host-gw cannot reach it (use vxlan)`}`,
    ];
  }
  if (d.backend !== "vxlan") return [];
  const dev = d.overlay!;
  const vtep = formatIp4(l.subnet.ip);
  const mac = l.attrs.vxlan!.VtepMAC.toLowerCase();
  // DirectRouting programs a plain route via the peer's PublicIP instead
  if (routeTo && routeTo.gateway === pub && routeTo.dev === ul) return [];
  const out: string[] = [];
  if (!(routeTo && routeTo.gateway === vtep && routeTo.dev === dev))
    out.push(
      `route ${subnet} via ${vtep} dev ${dev} onlink missing${routeTo ? ` (have: via ${routeTo.gateway ?? "-"} dev ${routeTo.dev ?? "-"})` : ""}`,
    );
  const neighs = f.neighbours.ok ? f.neighbours.value : [];
  const n = neighs.find((x) => x.dst === vtep);
  if (!n) out.push(`neigh ${vtep} lladdr ${mac} dev ${dev} missing`);
  else if ((n.lladdr ?? "").toLowerCase() !== mac)
    out.push(`neigh ${vtep} dev ${dev} has lladdr ${n.lladdr ?? "none"}, lease says ${mac}`);
  const fdb = f.fdb.ok ? f.fdb.value : [];
  const e = fdb.find((x) => x.mac.toLowerCase() === mac);
  const dst = e ? (e as { dst?: string }).dst : undefined;
  if (!e) out.push(`fdb ${mac} dev ${dev} dst ${pub} missing`);
  else if (dst !== pub) out.push(`fdb ${mac} dev ${dev} points at ${dst ?? "nothing"}, lease says ${pub}`);
  return out;
}

/** Every remote lease is programmed (kernel entries or map). */
export function checkRemoteLeases(f: Facts): Check {
  const id = "remote-leases";
  const d = derive(f);
  const why = "a lease that is not programmed is a node this node's pods cannot reach";
  if (d.backend === null || d.backend === "alloc")
    return ok(id, `backend ${d.backend ?? "unknown"}: nothing to program`, why);
  if (!f.registry.ok)
    return {
      id,
      status: "warning",
      finding: "cannot check: the registry is unreachable",
      why,
      fix: "",
      fixable: false,
    };
  const problems: string[] = [];
  if (d.backend === "ebpf-vxlan") {
    let programmed: Set<string> | null = null;
    if (f.bpf.ok && f.bpf.value.subnets.ok) programmed = new Set(f.bpf.value.subnets.value);
    else if (f.agent.ok)
      programmed = new Set(f.agent.value.status.leases.filter((l) => l.programmed).map((l) => l.subnet));
    if (!programmed)
      return {
        id,
        status: "warning",
        finding: `cannot read the subnet map under ${f.settings.bpffs} and no agent answers`,
        why,
        fix: "run doctor as root with bpftool installed, or with the agent running",
        fixable: false,
      };
    for (const l of d.peers)
      if (!programmed.has(formatCidr(l.subnet)))
        problems.push(`lease ${l.key} (${formatIp4(l.attrs.publicIp)}) is not in map tartan_subnets`);
  } else {
    if (!f.routes.ok)
      return {
        id,
        status: "warning",
        finding: `cannot read routes: ${f.routes.error}`,
        why,
        fix: "",
        fixable: false,
      };
    for (const l of d.peers) for (const m of missingFor(f, d, l)) problems.push(`lease ${l.key}: ${m}`);
  }
  const foreign = d.foreign.map(
    (l) =>
      `lease ${l.key} (${l.attrs.backendType || "no backend"}) is not programmed by ${d.backend}: by design`,
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

/** Kernel entries inside the cluster network with no lease behind them. */
export interface StaleEntry {
  readonly kind: "route" | "neigh" | "fdb";
  /** What `ip`/`bridge` would delete: "198.19.9.0/24 dev flannel.1". */
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
  return out;
}

/** Nothing programmed without a lease: stale routes, neighbours, FDB entries. */
export function checkStaleEntries(f: Facts): Check {
  const id = "stale-entries";
  const why =
    "an entry for a subnet nobody leases sends that traffic to a node that is gone, or that now has another subnet";
  const d = derive(f);
  if (!f.registry.ok)
    return {
      id,
      status: "warning",
      finding: "cannot check: the registry is unreachable",
      why,
      fix: "",
      fixable: false,
    };
  if (!d.network)
    return {
      id,
      status: "warning",
      finding: "cannot check: no network config",
      why,
      fix: "",
      fixable: false,
    };
  const stale = staleEntries(f);
  if (stale.length === 0)
    return ok(id, `no route, neighbour or FDB entry in ${formatCidr(d.network)} without a lease`, why);
  const items = stale.map((s) => `${s.kind} ${s.spec}`);
  return {
    id,
    status: "problem",
    finding: `no lease for ${firstFew(items, 2)}`,
    why,
    fix: `tartan doctor --fix deletes them (${stale[0]!.kind === "fdb" ? "bridge fdb del" : `ip ${stale[0]!.kind} del`} ${stale[0]!.spec})`,
    fixable: true,
    details: items,
  };
}

/** underlay → overlay (−50 for VXLAN) → bridge → pod veths. */
export function checkMtu(f: Facts): Check {
  const id = "mtu";
  const d = derive(f);
  const why =
    "a packet bigger than the next hop's MTU is dropped or answered with 'frag needed'; TCP stalls on big transfers while ping works";
  if (!f.underlay.ok)
    return {
      id,
      status: "warning",
      finding: `cannot find the underlay: ${f.underlay.error}`,
      why,
      fix: "give --iface=NAME",
      fixable: false,
    };
  if (!f.links.ok || d.podMtu === null || d.backend === "alloc" || d.backend === null)
    return ok(
      id,
      `underlay ${f.underlay.value.name} MTU ${f.underlay.value.mtu}; nothing more to compare`,
      why,
    );
  const ul = f.underlay.value;
  const chain: string[] = [`${ul.name} ${ul.mtu}`];
  const problems: string[] = [];
  let fixable = true;
  const encap = d.overlay !== null;
  if (encap && d.podMtu + VXLAN_OVERHEAD > ul.mtu) {
    problems.push(
      `overlay MTU ${d.podMtu} + ${VXLAN_OVERHEAD} bytes of VXLAN exceeds ${ul.name} MTU ${ul.mtu}`,
    );
    fixable = false;
  }
  if (!encap && d.podMtu > ul.mtu) {
    problems.push(`pod MTU ${d.podMtu} exceeds ${ul.name} MTU ${ul.mtu}`);
    fixable = false;
  }
  if (encap) {
    const o = linkOf(f, d.overlay);
    if (o) {
      chain.push(`${o.name} ${o.mtu}`);
      if (o.mtu !== d.podMtu)
        problems.push(
          o.mtu > d.podMtu
            ? `${o.name} MTU ${o.mtu} is above ${d.podMtu} (${ul.name} ${ul.mtu} − ${VXLAN_OVERHEAD}): encapsulated packets leave too big for ${ul.name}`
            : `${o.name} MTU ${o.mtu} is below ${d.podMtu}, the pods' MTU: their bigger packets are refused`,
        );
    }
  }
  const br = linkOf(f, f.settings.bridge);
  if (br) {
    chain.push(`${br.name} ${br.mtu}`);
    if (br.mtu > d.podMtu) {
      problems.push(`${br.name} MTU ${br.mtu} is above ${d.podMtu}`);
      fixable = false;
    }
    const ports = f.links.ok ? f.links.value.filter((l) => l.master === br.name) : [];
    const big = ports.filter((p) => p.mtu > d.podMtu!);
    if (ports.length)
      chain.push(`${ports.length} pod veth(s) ${[...new Set(ports.map((p) => p.mtu))].join("/")}`);
    if (big.length) {
      problems.push(`pod veth(s) ${big.map((p) => `${p.name} ${p.mtu}`).join(", ")} above ${d.podMtu}`);
      fixable = false;
    }
  }
  if (problems.length)
    return {
      id,
      status: "problem",
      finding: `${firstFew(problems, 2)} [${chain.join(" → ")}]`,
      why,
      fix: fixable
        ? `tartan doctor --fix (ip link set ${d.overlay} mtu ${d.podMtu}); pods that got 'frag needed' keep the smaller path MTU until it expires (net.ipv4.route.mtu_expires, 10 min) or ip route flush cache in the pod`
        : `set Backend.MTU in the network config (or --iface's MTU) so pods get ≤ underlay − ${VXLAN_OVERHEAD}; recreate pods whose veth is too big`,
      fixable,
      details: problems,
    };
  return ok(id, chain.join(" → "), why);
}

/** net.ipv4.ip_forward must be 1: pods are routed through the node. */
export function checkIpForward(f: Facts): Check {
  const id = "ip-forward";
  const v = f.sysctls["net.ipv4.ip_forward"] ?? null;
  const why = "with forwarding off the node drops every packet between pods and the overlay";
  if (v === "1") return ok(id, "net.ipv4.ip_forward=1", why);
  return {
    id,
    status: "problem",
    finding: `net.ipv4.ip_forward=${v ?? "unreadable"}`,
    why,
    fix: "tartan doctor --fix (sysctl -w net.ipv4.ip_forward=1; persist it in /etc/sysctl.d/)",
    fixable: v !== null,
  };
}

/** Effective reverse-path filtering on the underlay: max(all, iface). */
export function checkRpFilter(f: Facts): Check {
  const id = "rp-filter";
  const d = derive(f);
  const ifn = f.underlay.ok ? f.underlay.value.name : null;
  const why =
    "strict reverse-path filtering (1) drops packets whose source is not routed back through the interface they came in on: what the eBPF decap program hands to the stack (traffic for the node itself, pods not yet in its endpoint map) arrives on the underlay while remote pod subnets are routed via the overlay device";
  if (!ifn)
    return {
      id,
      status: "warning",
      finding: "underlay unknown",
      why,
      fix: "give --iface=NAME",
      fixable: false,
    };
  const all = f.sysctls["net.ipv4.conf.all.rp_filter"] ?? null;
  const dev = f.sysctls[`net.ipv4.conf.${ifn}.rp_filter`] ?? null;
  const eff = Math.max(Number(all ?? 0), Number(dev ?? 0));
  const what = `net.ipv4.conf.all.rp_filter=${all ?? "?"}, net.ipv4.conf.${ifn}.rp_filter=${dev ?? "?"} (effective ${eff})`;
  if (eff !== 1) return ok(id, `${what}: not strict`, why);
  const fix = `tartan doctor --fix (sysctl -w net.ipv4.conf.${ifn}.rp_filter=2: loose, as Cilium and the ebpf-vxlan backend set it)`;
  if (d.backend === "ebpf-vxlan")
    return {
      id,
      status: "problem",
      finding: `${what}: strict on ${ifn} breaks the eBPF decap path`,
      why,
      fix,
      fixable: true,
    };
  return {
    id,
    status: "warning",
    finding: `${what}: strict; harmless for ${d.backend ?? "this backend"} with symmetric routes, breaks ebpf-vxlan and asymmetric underlays`,
    why,
    fix,
    fixable: true,
  };
}

/** br_netfilter / bridge-nf-call-iptables, where kube-proxy needs it. */
export function checkBrNetfilter(f: Facts): Check {
  const id = "br-netfilter";
  const v = f.sysctls["net.bridge.bridge-nf-call-iptables"] ?? null;
  const kube = f.nft.ok && hasKubeProxy(f.nft.value);
  const why =
    "kube-proxy's Service rules are iptables rules; pod-to-pod traffic on the same bridge only passes them with br_netfilter loaded and bridge-nf-call-iptables=1, else Services to local pods break";
  if (v === "1") return ok(id, "net.bridge.bridge-nf-call-iptables=1", why);
  if (!kube)
    return ok(
      id,
      `${v === null ? "br_netfilter not loaded" : `net.bridge.bridge-nf-call-iptables=${v}`}; no kube-proxy rules on this node, nothing needs it`,
      why,
    );
  return {
    id,
    status: "problem",
    finding: `${v === null ? "br_netfilter is not loaded" : `net.bridge.bridge-nf-call-iptables=${v}`} while kube-proxy rules (KUBE-*) are present`,
    why,
    fix: "tartan doctor --fix (modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1; persist in /etc/modules-load.d and /etc/sysctl.d)",
    fixable: true,
  };
}

/** A forward chain that drops by policy must accept the cluster network. */
export function checkForwardPolicy(f: Facts): Check {
  const id = "forward-policy";
  const d = derive(f);
  const why =
    "a FORWARD policy of drop (Docker sets one) silently drops pod traffic between nodes unless the cluster network is accepted, as flanneld's FLANNEL-FWD rules do";
  if (!f.nft.ok)
    return {
      id,
      status: "warning",
      finding: `cannot read the ruleset: ${f.nft.error}`,
      why,
      fix: "",
      fixable: false,
    };
  if (!d.network)
    return {
      id,
      status: "warning",
      finding: "cannot check: no network config",
      why,
      fix: "",
      fixable: false,
    };
  const net = formatCidr(d.network);
  const drops = droppingForwardChains(f.nft.value);
  if (drops.length === 0) return ok(id, "no forward chain drops by policy", why);
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const c of drops) {
    const s = acceptsNetwork(f.nft.value, c, "saddr", d.network);
    const t = acceptsNetwork(f.nft.value, c, "daddr", d.network);
    if (!s && !t)
      problems.push(`chain ${chainName(c)} drops by policy and accepts nothing from or to ${net}`);
    else if (!s) warnings.push(`chain ${chainName(c)} accepts ip daddr ${net} but not ip saddr ${net}`);
    else if (!t) warnings.push(`chain ${chainName(c)} accepts ip saddr ${net} but not ip daddr ${net}`);
  }
  const c0 = drops[0]!;
  const fix =
    c0.table === LEGACY_FILTER
      ? `tartan doctor --fix (iptables-legacy -I FORWARD 1 -s ${net} -j ACCEPT; iptables-legacy -I FORWARD 1 -d ${net} -j ACCEPT)`
      : `tartan doctor --fix (nft insert rule ${chainName(c0)} ip saddr ${net} accept; nft insert rule ${chainName(c0)} ip daddr ${net} accept)`;
  if (problems.length)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix,
      fixable: true,
      details: [...problems, ...warnings],
    };
  if (warnings.length)
    return {
      id,
      status: "warning",
      finding: firstFew(warnings, 2),
      why,
      fix,
      fixable: true,
      details: warnings,
    };
  return ok(id, `${drops.map(chainName).join(", ")} drop by policy but accept ${net} both ways`, why);
}

/** --ip-masq ⇒ table ip tartan with the masquerade rules; no --ip-masq ⇒ no leftover table. */
export function checkMasquerade(f: Facts): Check {
  const id = "masquerade";
  const d = derive(f);
  const why =
    "with --ip-masq, pods reach outside the cluster only through masquerading to the node's address; replies to pod addresses are not routed back";
  if (!f.nft.ok)
    return {
      id,
      status: "warning",
      finding: `cannot read the ruleset: ${f.nft.error}`,
      why,
      fix: "",
      fixable: false,
    };
  const present = hasTable(f.nft.value, "ip", TARTAN_MASQ_TABLE);
  if (!f.settings.ipMasq) {
    if (present)
      return {
        id,
        status: "warning",
        finding: `table ip ${TARTAN_MASQ_TABLE} is present but --ip-masq is off`,
        why: "a leftover table masquerades pod traffic nobody asked to masquerade",
        fix: `tartan doctor --fix (nft delete table ip ${TARTAN_MASQ_TABLE}), or run the agent with --ip-masq`,
        fixable: true,
      };
    return ok(id, "--ip-masq is off and no table ip tartan exists", why);
  }
  if (!d.network)
    return {
      id,
      status: "warning",
      finding: "cannot check: no network config",
      why,
      fix: "",
      fixable: false,
    };
  if (present && masqueradesNetwork(f.nft.value, TARTAN_MASQ_TABLE, d.network))
    return ok(
      id,
      `table ip ${TARTAN_MASQ_TABLE} masquerades ${formatCidr(d.network)} leaving the cluster`,
      why,
    );
  return {
    id,
    status: "problem",
    finding: present
      ? `table ip ${TARTAN_MASQ_TABLE} has no masquerade rule for ${formatCidr(d.network)}`
      : `table ip ${TARTAN_MASQ_TABLE} is missing though --ip-masq is on`,
    why,
    fix: "tartan doctor --fix re-applies it (the running agent also re-applies it within 5 s)",
    fixable: d.own !== null,
  };
}

/** Files in the CNI config directory that sort before ours win. */
export function checkCniConfig(f: Facts): Check {
  const id = "cni-config";
  const c = f.cni;
  const why =
    "the container runtime uses the first CNI config in lexical order; a leftover file before ours (another CNI, an old flannel) gives pods another network";
  if (!c.exists) return ok(id, `${c.dir} does not exist (no CNI runtime configured here)`, why);
  if (c.files.length === 0)
    return {
      id,
      status: "warning",
      finding: `${c.dir} has no CNI config: pods get no network`,
      why,
      fix: "install deploy/cni/10-tartan.conflist there",
      fixable: false,
    };
  const ours = c.files.findIndex((x) => x.invalid === null && x.types.some((t) => OUR_CNI_TYPES.includes(t)));
  if (ours < 0)
    return {
      id,
      status: "warning",
      finding: `no config in ${c.dir} uses the tartan plugin; ${c.files[0]!.name} (${c.files[0]!.types.join(",") || "invalid"}) wins`,
      why,
      fix: "install deploy/cni/10-tartan.conflist there",
      fixable: false,
    };
  const before = c.files.slice(0, ours);
  if (before.length === 0) return ok(id, `${c.dir}/${c.files[ours]!.name} is the first config: it wins`, why);
  const items = before.map(
    (x) => `${c.dir}/${x.name} (${x.invalid ? `invalid: ${x.invalid}` : `plugins ${x.types.join(",")}`})`,
  );
  return {
    id,
    status: "problem",
    finding: `${firstFew(items, 2)} sorts before ${c.files[ours]!.name} and wins`,
    why,
    fix: `move it away: mv ${c.dir}/${before[0]!.name} /root/ (then recreate the pods it networked)`,
    fixable: false,
    details: items,
  };
}

/** Parses "6.18.44-foo" → [6, 18]; null when unparseable. */
export function kernelVersion(release: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

export function kernelBefore(release: string, v: readonly [number, number]): boolean | null {
  const k = kernelVersion(release);
  if (!k) return null;
  return k[0] < v[0] || (k[0] === v[0] && k[1] < v[1]);
}

/**
 * The VXLAN TX checksum offload bug: before 5.7, NAT of the outer UDP packet
 * (kube-proxy's MASQUERADE --random-fully) corrupted a checksum the vxlan device left to
 * offload; the receiver dropped the SYN, TCP retried after 1, 3, 7, 15, 31 s: 63 s.
 */
export function checkChecksumOffload(f: Facts): Check {
  const id = "checksum-offload";
  const d = derive(f);
  const why =
    "on kernels before 5.7 the vxlan device's offloaded UDP checksum is corrupted when the outer packet is NATed (kube-proxy MASQUERADE --random-fully): receivers drop it and connections to Services hang for 63 s (SYN retries 1+2+4+8+16+32 s); behind a NAT between nodes it can happen on any kernel";
  if (d.backend !== "vxlan")
    return ok(
      id,
      `backend ${d.backend ?? "unknown"} does not use the kernel vxlan device's checksum offload`,
      why,
    );
  const dev = d.overlay!;
  if (!f.offload.ok)
    return {
      id,
      status: "warning",
      finding: `cannot read ethtool -k ${dev}: ${f.offload.error}`,
      why,
      fix: "apt install ethtool",
      fixable: false,
    };
  const v = f.offload.value["tx-checksum-ip-generic"];
  const fix = `tartan doctor --fix (ethtool -K ${dev} tx-checksum-ip-generic off)`;
  if (v !== "on") return ok(id, `${dev} tx-checksum-ip-generic is ${v ?? "absent"}`, why);
  const old = kernelBefore(f.kernel, CHECKSUM_FIXED_KERNEL);
  if (old === true)
    return {
      id,
      status: "problem",
      finding: `kernel ${f.kernel} (< 5.7) with ${dev} tx-checksum-ip-generic on`,
      why,
      fix,
      fixable: true,
    };
  const ul = f.underlay.ok ? f.underlay.value : null;
  if (ul && ul.publicIp !== ul.ifaceIp)
    return {
      id,
      status: "warning",
      finding: `${dev} tx-checksum-ip-generic on while PublicIP ${formatIp4(ul.publicIp)} differs from ${ul.name}'s ${formatIp4(ul.ifaceIp)} (NAT between nodes)`,
      why,
      fix,
      fixable: true,
    };
  return ok(
    id,
    `kernel ${f.kernel} ${old === false ? "has the fix (5.7+)" : "version unknown"}; ${dev} tx-checksum-ip-generic on is safe`,
    why,
  );
}

/** A probe through the datapath to every peer, with its round trip. */
export function checkPeers(f: Facts): Check {
  const id = "peers";
  const d = derive(f);
  const why = `pods reach other nodes only if VXLAN (UDP ${d.port}) passes between the nodes; a firewall or security group that drops it black-holes pod traffic while the nodes still ping each other`;
  if (f.probes === null) return ok(id, "not probed (--no-probe)", why);
  if (f.probes.length === 0) return ok(id, "no remote peers to probe", why);
  const bad = f.probes.filter((p) => !p.ok);
  const items = f.probes.map(
    (p) =>
      `${p.target} (lease ${p.lease}, node ${p.publicIp}): ${p.ok ? `${p.rttMs?.toFixed(3)} ms` : `no answer${p.error ? ` (${p.error})` : ""}`}`,
  );
  if (bad.length)
    return {
      id,
      status: "problem",
      finding: `${bad.length} of ${f.probes.length} peer(s) do not answer through the overlay: ${firstFew(
        bad.map((p) => `${p.target} (node ${p.publicIp})`),
        3,
      )}`,
      why,
      fix: `allow UDP ${d.port} between the nodes' addresses; on the peer, tcpdump -ni <iface> udp port ${d.port} shows whether probes arrive; run tartan doctor there too`,
      fixable: false,
      details: items,
    };
  return { ...ok(id, firstFew(items, 4), why), details: items };
}

/** Every check, in report order. */
export const CHECKS: readonly ((f: Facts) => Check)[] = [
  checkAgent,
  checkRegistry,
  checkLease,
  checkSubnetEnv,
  checkBridge,
  checkDatapath,
  checkRemoteLeases,
  checkStaleEntries,
  checkMtu,
  checkIpForward,
  checkRpFilter,
  checkBrNetfilter,
  checkForwardPolicy,
  checkMasquerade,
  checkCniConfig,
  checkChecksumOffload,
  checkPeers,
];

export function judge(f: Facts): Check[] {
  return CHECKS.map((c) => c(f));
}
