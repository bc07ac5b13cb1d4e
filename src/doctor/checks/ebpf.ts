/**
 * Doctor's judgement of an ebpf-vxlan node, against what the backend's facts
 * (src/backend/ebpf-vxlan/facts.ts) say it must hold: the pins, its programs on the
 * hooks it uses (and that they are the running agent's), the cluster route via the
 * overlay device, and the subnet and member maps of both families — read through their
 * pins with the ABI's codecs — against the leases. Pure.
 */
import {
  expectedAttachments,
  expectedMembers,
  expectedSubnets,
  expectedSubnets6,
  namesProgram,
  overlayRoute,
} from "../../backend/ebpf-vxlan/facts.ts";
import { routeLine } from "../../backend/facts.ts";
import { MAPS, type Subnet6Value } from "../../bpf/abi.ts";
import { formatIp4 } from "../../config/cidr.ts";
import { formatCidr6, formatIp6, type Ip6 } from "../../config/cidr6.ts";
import type { Facts } from "../facts.ts";
import { type Derived, leaseName, linkOf } from "./common.ts";

/** What is wrong with the programs, pins and slow-path route of overlay device `dev` (none of it --fix can repair). */
export function ebpfDatapathProblems(f: Facts, d: Derived, dev: string): string[] {
  if (!f.bpf.ok) return [`cannot inspect eBPF state: ${f.bpf.error}`];
  const bpf = f.bpf.value;
  const out: string[] = [];
  const missingPins = Object.values(MAPS)
    .map((m) => `maps/${m}`)
    .filter((p) => !bpf.pins.includes(p));
  if (missingPins.length > 0) out.push(`pins missing under ${f.settings.bpffs}: ${missingPins.join(", ")}`);
  const expected = expectedAttachments({
    underlay: f.underlay.ok ? f.underlay.value.name : null,
    overlay: dev,
    bridge: linkOf(f, f.settings.bridge) ? f.settings.bridge : null,
  });
  for (const w of expected) {
    const there = bpf.attachments.some(
      (a) =>
        a.iface === w.iface &&
        w.hooks.some((h) => h === a.hook) &&
        w.programs.some((p) => namesProgram(a.progName, p)),
    );
    if (!there)
      out.push(`no ${w.role} program (${w.programs.join(" or ")} at ${w.hooks.join(" or ")}) on ${w.iface}`);
  }
  // an attached program that is not the pinned one was loaded by another (older) agent run
  for (const a of bpf.attachments) {
    const pinned = Object.entries(bpf.pinnedProgIds).find(([n]) => namesProgram(a.progName, n));
    if (pinned && pinned[1] !== a.progId)
      out.push(
        `${a.iface} ${a.hook} runs ${pinned[0]} id ${a.progId}, not the pinned (running agent's) id ${pinned[1]}: an older datapath is attached`,
      );
  }
  if (d.own && d.network && f.routes.ok) {
    const r = overlayRoute(d.network, d.vni);
    if (!f.routes.value.some((x) => x.dst === r.dst && x.dev === r.dev))
      out.push(`route ${routeLine(r)} is missing: traffic from the node itself has no way into the overlay`);
  }
  return out;
}

/**
 * Peer leases the maps do not carry as the leases say: absent from the subnet map, sent
 * to another node or VTEP MAC, or their node not a member (decap drops its packets).
 * Null when the subnet map could not be read.
 */
export function ebpfLeaseProblems(f: Facts, d: Derived): string[] | null {
  if (!f.bpf.ok || !f.bpf.value.subnets.ok) return null;
  const bpf = f.bpf.value;
  const want = expectedSubnets(d.peers, d.scope);
  const have = new Map(
    bpf.subnets.ok ? bpf.subnets.value.filter((e) => !e.local).map((e) => [e.subnet, e]) : [],
  );
  const out: string[] = [];
  for (const l of d.peers) {
    const w = want.get(l.subnet.ip);
    if (!w) continue;
    const e = have.get(leaseName(l));
    const node = formatIp4(w.nodeIp);
    if (!e) out.push(`lease ${leaseName(l)} (${node}) is not in map ${MAPS.subnets}`);
    else if (e.nodeIp !== node || e.vtepMac.toLowerCase() !== w.vtepMac.toLowerCase())
      out.push(
        `lease ${leaseName(l)}: map ${MAPS.subnets} sends it to ${e.nodeIp} (VTEP MAC ${e.vtepMac}), the lease says ${node} (${w.vtepMac})`,
      );
  }
  if (bpf.members.ok)
    for (const ip4 of expectedMembers(want).keys())
      if (!(formatIp4(ip4) in bpf.members.value))
        out.push(`node ${formatIp4(ip4)} is not in map ${MAPS.members}: decap drops its VXLAN packets`);
  return out;
}

/**
 * Map entries no lease stands behind ("<map> <entry>"): subnets sent to a node, nodes
 * accepted as members; in both families (on an IPv4-only network every remote IPv6
 * entry is one).
 */
export function ebpfStaleMapEntries(f: Facts, d: Derived): string[] {
  if (!f.bpf.ok) return [];
  const bpf = f.bpf.value;
  const want = expectedSubnets(d.peers, d.scope);
  const leased = new Set(d.peers.map(leaseName));
  const out: string[] = [];
  if (bpf.subnets.ok)
    for (const e of bpf.subnets.value)
      if (!e.local && !leased.has(e.subnet)) out.push(`${MAPS.subnets} ${e.subnet} (node ${e.nodeIp})`);
  if (bpf.members.ok) {
    const members = new Set([...expectedMembers(want).keys()].map(formatIp4));
    for (const node of Object.keys(bpf.members.value))
      if (!members.has(node)) out.push(`${MAPS.members} ${node}`);
  }
  const v6 = f.config.ok ? f.config.value.ipv6 : null;
  const want6 = v6 ? expectedSubnets6(d.peers, d.vni, v6.subnetLen) : new Map<Ip6, Subnet6Value>();
  const leased6 = new Set(v6 ? [...want6.keys()].map((ip) => formatCidr6({ ip, len: v6.subnetLen })) : []);
  if (bpf.subnets6?.ok)
    for (const e of bpf.subnets6.value)
      if (!e.local && !leased6.has(e.subnet)) out.push(`${MAPS.subnets6} ${e.subnet} (node ${e.nodeIp})`);
  if (bpf.members6?.ok) {
    const members6 = new Set([...want6.values()].map((v) => formatIp6(v.nodeIp6)));
    for (const node of Object.keys(bpf.members6.value))
      if (!members6.has(node)) out.push(`${MAPS.members6} ${node}`);
  }
  return out;
}
