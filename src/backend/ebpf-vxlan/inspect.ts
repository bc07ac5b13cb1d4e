/**
 * The ebpf-vxlan datapath as the kernel holds it, read for `tartan doctor`: which pins
 * exist, the kernel ids of the pinned programs (what the running agent loaded), the
 * programs attached to each link (TC ingress and egress through tcx or clsact, XDP),
 * and the subnet and member maps read through their pins with the ABI's codecs — the
 * very decoding the agent writes with. Read-only; each function throws what it could not read, for the caller
 * to report.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subnet6Key, Subnet6Value, SubnetKey, SubnetValue } from "../../bpf/abi.ts";
import { objectId, programName, tcQuery, tcxQuery, xdpQuery } from "../../bpf/attach.ts";
import { openPin } from "../../bpf/pin.ts";
import type { Ip4 } from "../../config/cidr.ts";
import type { Ip6 } from "../../config/cidr6.ts";
import type { Hook } from "./facts.ts";
import { withPinnedMap } from "./pins.ts";

/** Paths under the pin directory that exist, relative to it ("maps/tartan_subnets"). */
export function listPins(bpffs: string): string[] {
  const out: string[] = [];
  for (const sub of ["maps", "progs"]) {
    try {
      for (const n of readdirSync(join(bpffs, sub))) out.push(`${sub}/${n}`);
    } catch {}
  }
  return out;
}

/** Pinned program name → its kernel id. */
export function pinnedProgramIds(bpffs: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pin of listPins(bpffs).filter((p) => p.startsWith("progs/"))) {
    using prog = openPin(join(bpffs, pin));
    if (prog !== null) out[pin.slice("progs/".length)] = objectId(prog.fd);
  }
  return out;
}

export interface Attachment {
  readonly iface: string;
  readonly hook: Hook;
  readonly progId: number;
  /** As the kernel keeps it: at most 15 characters. */
  readonly progName: string;
}

/**
 * Every program on these links' TC hooks (tcx, which bpftool before 7.3 does not list,
 * and our clsact filter) and any XDP program.
 */
export function attachedPrograms(links: readonly { name: string; ifindex: number }[]): Attachment[] {
  const out: Attachment[] = [];
  const add = (iface: string, hook: Hook, id: number | null) => {
    if (id !== null) out.push({ iface, hook, progId: id, progName: programName(id) ?? "" });
  };
  for (const l of links) {
    for (const dir of ["ingress", "egress"] as const) {
      for (const id of tcxQuery(l.ifindex, l.name, dir) ?? []) add(l.name, `tc-${dir}`, id);
      add(l.name, `tc-${dir}`, tcQuery(l.ifindex, l.name, dir));
    }
    for (const mode of ["native", "generic"] as const) add(l.name, "xdp", xdpQuery(l.ifindex, l.name, mode));
  }
  return out;
}

/** The pinned subnet map's entries; null when it is not pinned. */
export function readSubnetMap(bpffs: string): Array<[SubnetKey, SubnetValue]> | null {
  return withPinnedMap(bpffs, "subnets", (m) => m.entries());
}

/** The pinned member map's entries (node IP → leases); null when it is not pinned. */
export function readMemberMap(bpffs: string): Array<[Ip4, number]> | null {
  return withPinnedMap(bpffs, "members", (m) => m.entries());
}

/** Dual stack: the pinned IPv6 subnet map's entries; null when it is not pinned. */
export function readSubnet6Map(bpffs: string): Array<[Subnet6Key, Subnet6Value]> | null {
  return withPinnedMap(bpffs, "subnets6", (m) => m.entries());
}

/** Dual stack: the pinned IPv6 member map's entries; null when it is not pinned. */
export function readMember6Map(bpffs: string): Array<[Ip6, number]> | null {
  return withPinnedMap(bpffs, "members6", (m) => m.entries());
}
