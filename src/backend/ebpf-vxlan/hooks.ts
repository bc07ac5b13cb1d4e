/**
 * Our programs on the kernel's hooks of a link: TC ingress and egress through tcx
 * (kernel 6.6+) or, on older kernels, a clsact filter; XDP. Attach (or atomically
 * replace), detach, and whether one of ours is there — ours by name (tartan_*), never
 * someone else's program. tcx, because attaching a first clsact filter creates the
 * clsact qdisc, which stalls an up device and drops what it sends meanwhile
 * (docs/reliability.md, cause 1).
 */
import {
  objectId,
  programName,
  type TcDirection,
  tcAttach,
  tcDetach,
  tcQuery,
  tcxAttach,
  tcxDetach,
  tcxQuery,
  xdpQuery,
} from "../../bpf/attach.ts";
import type { Logger } from "../../log.ts";

/** Is the program with this kernel id one of ours (by name)? */
const ours = (id: number) => (programName(id) ?? "").startsWith("tartan_");

/** Is one of our programs (by name) attached as XDP to this interface, in either mode? */
export function ourXdp(ifindex: number, ifname: string): boolean {
  return (["native", "generic"] as const).some((m) => {
    const id = xdpQuery(ifindex, ifname, m);
    return id !== null && ours(id);
  });
}

/** Our programs on a tcx hook (none, or null when the kernel has no tcx). */
function ourTcx(ifindex: number, ifname: string, dir: TcDirection): number[] | null {
  return tcxQuery(ifindex, ifname, dir)?.filter(ours) ?? null;
}

/** Our clsact filter's program (our handle and priority, one of our programs) on this hook, or null. */
function ourClsact(ifindex: number, ifname: string, dir: TcDirection): number | null {
  const id = tcQuery(ifindex, ifname, dir);
  return id !== null && ours(id) ? id : null;
}

/**
 * Attaches our TC program to a hook, or atomically replaces the one there, through tcx
 * (kernel 6.6+): attaching a first clsact filter creates the clsact qdisc, which stops
 * an up device's transmit queues for a moment and drops what it sends meanwhile (traced
 * in docs/reliability.md, cause 1); tcx needs no qdisc. A clsact filter an older agent
 * left is removed afterwards (tcx runs first and decides, so it no longer sees packets);
 * the qdisc itself stays, as deleting it would stall the device again. Without tcx the
 * clsact filter is used, with that moment on first attach.
 */
export function attachTc(
  ifindex: number,
  ifname: string,
  dir: TcDirection,
  progFd: number,
  log?: Logger,
): void {
  const mine = ourTcx(ifindex, ifname, dir);
  if (mine === null) {
    tcAttach(ifindex, ifname, dir, progFd);
    return;
  }
  // this very program may be there already, beside another of ours (the agent and the
  // CNI plugin attaching at once across an agent restart): keep it, remove the others
  const id = objectId(progFd);
  const others = mine.filter((m) => m !== id);
  if (others.length === mine.length) tcxAttach(ifindex, ifname, dir, progFd, others.shift() ?? null);
  for (const o of others) tcxDetach(ifindex, ifname, dir, o);
  if (ourClsact(ifindex, ifname, dir) !== null && tcDetach(ifindex, ifname, dir))
    log?.info("replaced a clsact filter of an older agent with tcx", { iface: ifname, dir });
}

/** Removes our TC programs from a hook, tcx and clsact; false when there were none. */
export function detachTc(ifindex: number, ifname: string, dir: TcDirection): boolean {
  let any = false;
  for (const id of ourTcx(ifindex, ifname, dir) ?? []) any = tcxDetach(ifindex, ifname, dir, id) || any;
  if (ourClsact(ifindex, ifname, dir) !== null) any = tcDetach(ifindex, ifname, dir) || any;
  return any;
}

/** The kernel ids of our programs on this TC hook: tcx in run order, then our clsact filter's. */
export function ourTcPrograms(ifindex: number, ifname: string, dir: TcDirection): number[] {
  const ids = ourTcx(ifindex, ifname, dir) ?? [];
  const clsact = ourClsact(ifindex, ifname, dir);
  return clsact === null ? ids : [...ids, clsact];
}

/** Is one of our programs attached to this TC hook (tcx or clsact)? */
export function ourTc(ifindex: number, ifname: string, dir: TcDirection): boolean {
  return ourTcPrograms(ifindex, ifname, dir).length > 0;
}
