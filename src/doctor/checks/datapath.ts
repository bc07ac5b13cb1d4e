/**
 * Doctor's checks of what carries pod packets on this node: the pod bridge's address,
 * the backend's datapath (its device, or its eBPF programs, pins and route), the MTU
 * chain from the underlay to the pods, and the vxlan device's checksum offload. What
 * each backend must have comes from its facts (src/backend/<name>/facts.ts). Pure.
 */
import { vtepAddress } from "../../backend/facts.ts";
import { firstHost, formatIp4 } from "../../config/cidr.ts";
import type { Facts, LinkFacts, UnderlayFacts } from "../facts.ts";
import {
  CHECKSUM_FIXED_KERNEL,
  type Check,
  cannot,
  type Derived,
  derive,
  firstFew,
  leaseName,
  linkOf,
  ok,
  RESTART,
} from "./common.ts";
import { ebpfDatapathProblems } from "./ebpf.ts";

/** The pod bridge carries exactly the lease's gateway address. */
export function checkBridge(f: Facts): Check {
  const id = "bridge";
  const br = f.settings.bridge;
  const why = `the CNI bridge plugin refuses every new pod when ${br} has another address ("${br} already has an IP address different from …"), and existing pods lose their gateway`;
  if (!f.links.ok) return cannot(id, `cannot list links: ${f.links.error}`, why);
  const link = linkOf(f, br);
  if (!link) return ok(id, `${br} does not exist yet (the CNI plugin creates it with the first pod)`, why);
  const own = f.ownLease;
  if (!own)
    return cannot(
      id,
      `${br} has ${link.addrs.join(", ") || "no address"}; no lease to compare with`,
      why,
      "fix the lease first",
    );
  const want = `${formatIp4(firstHost(own.subnet))}/${own.subnet.len}`;
  const stale = link.addrs.filter((a) => a !== want);
  const fix = `tartan doctor --fix (ip addr del ${stale[0] ?? want} dev ${br}; ip addr add ${want} dev ${br})`;
  if (stale.length > 0 || !link.addrs.includes(want))
    return {
      id,
      status: "problem",
      finding: `${br} has ${link.addrs.join(", ") || "no IPv4 address"}, lease ${leaseName(own)} needs exactly ${want}`,
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
  return ok(id, `${br} has ${want}, the gateway of lease ${leaseName(own)}`, why);
}

/** The vxlan device as flanneld makes it: kind, VNI, port, local address, learning off. */
function vxlanDeviceProblems(d: Derived, link: LinkFacts, ul: UnderlayFacts | null): string[] {
  const dev = link.name;
  const vx = link.vxlan;
  if (link.kind !== "vxlan" || vx === null) return [`${dev} is a ${link.kind ?? "plain"} device, not vxlan`];
  const out: string[] = [];
  if (vx.id !== d.vni) out.push(`${dev} has VNI ${vx.id}, the network config says ${d.vni}`);
  if (vx.port !== d.port) out.push(`${dev} uses UDP port ${vx.port}, the network config says ${d.port}`);
  if (ul && vx.local !== formatIp4(ul.ifaceIp))
    out.push(`${dev} has local ${vx.local ?? "unset"}, ${ul.name} is ${formatIp4(ul.ifaceIp)}`);
  if (vx.learning !== false)
    out.push(
      `${dev} has learning on (flanneld and Tartan program the FDB; learning lets any sender rewrite it)`,
    );
  return out;
}

/** What any overlay device must be: up and carrying our VTEP address (both fixable), with our VTEP MAC. */
function overlayProblems(d: Derived, link: LinkFacts): { fixable: string[]; other: string[] } {
  const dev = link.name;
  const fixable: string[] = [];
  const other: string[] = [];
  if (!link.up) fixable.push(`${dev} is down`);
  const mac = d.own?.attrs.vxlan?.VtepMAC ?? null;
  if (mac && link.mac.toLowerCase() !== mac.toLowerCase())
    other.push(
      `${dev} has MAC ${link.mac}, lease ${leaseName(d.own!)} announces VtepMAC ${mac} (peers address frames to ${mac})`,
    );
  if (d.own) {
    const want = vtepAddress(d.own.subnet);
    if (!link.addrs.includes(want))
      fixable.push(`${dev} lacks its VTEP address ${want} (has ${link.addrs.join(", ") || "none"})`);
  }
  return { fixable, other };
}

/** Expected datapath: the vxlan device as flanneld makes it, or the eBPF programs, pins and route. */
export function checkDatapath(f: Facts): Check {
  const id = "datapath";
  const d = derive(f);
  const why =
    "the datapath carries pod traffic to other nodes; a missing or misconfigured one black-holes it";
  if (d.backend === null)
    return cannot(
      id,
      "backend unknown (no --backend, no agent, no network config)",
      why,
      "give --backend=vxlan|ebpf-vxlan|host-gw",
    );
  if (d.backend === "alloc") return ok(id, "backend alloc programs nothing", why);
  if (!f.links.ok) return cannot(id, `cannot list links: ${f.links.error}`, why);
  const ul = f.underlay.ok ? f.underlay.value : null;
  if (d.overlay === null) {
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
    return ok(id, `${d.backend} routes via ${ul?.name ?? "the underlay"}; no overlay device`, why);
  }
  const dev = d.overlay;
  const link = linkOf(f, dev);
  if (!link)
    return {
      id,
      status: "problem",
      finding: `overlay device ${dev} is missing`,
      why,
      fix: RESTART,
      fixable: false,
    };
  const base = overlayProblems(d, link);
  const other = [
    ...(d.backend === "vxlan" ? vxlanDeviceProblems(d, link, ul) : ebpfDatapathProblems(f, d, dev)),
    ...base.other,
  ];
  const problems = [...other, ...base.fixable];
  if (problems.length > 0) {
    const fixable = other.length === 0;
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix: fixable ? `tartan doctor --fix (ip link set ${dev} up; ip addr replace …)` : RESTART,
      fixable,
      details: problems,
    };
  }
  const extra =
    d.backend === "vxlan"
      ? `VNI ${d.vni}, port ${d.port}, learning off`
      : "programs attached, pins present, cluster route in place";
  return ok(id, `${dev} up, MAC ${link.mac}, ${extra}`, why);
}

/** underlay → overlay (− the backend's overhead, 50 for VXLAN) → bridge → pod veths. */
export function checkMtu(f: Facts): Check {
  const id = "mtu";
  const d = derive(f);
  const why =
    "a packet bigger than the next hop's MTU is dropped or answered with 'frag needed'; TCP stalls on big transfers while ping works";
  if (!f.underlay.ok)
    return cannot(id, `cannot find the underlay: ${f.underlay.error}`, why, "give --iface=NAME");
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
  if (encap && d.podMtu + d.overhead > ul.mtu) {
    problems.push(`overlay MTU ${d.podMtu} + ${d.overhead} bytes of VXLAN exceeds ${ul.name} MTU ${ul.mtu}`);
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
            ? `${o.name} MTU ${o.mtu} is above ${d.podMtu} (${ul.name} ${ul.mtu} − ${d.overhead}): encapsulated packets leave too big for ${ul.name}`
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
        : `set Backend.MTU in the network config (or --iface's MTU) so pods get ≤ underlay − ${d.overhead}; recreate pods whose veth is too big`,
      fixable,
      details: problems,
    };
  return ok(id, chain.join(" → "), why);
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
    return cannot(id, `cannot read ethtool -k ${dev}: ${f.offload.error}`, why, "apt install ethtool");
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
