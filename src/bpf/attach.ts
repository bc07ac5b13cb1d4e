/**
 * Attaching programs to interfaces: TC through tcx (kernel 6.6+, BPF_PROG_ATTACH; no
 * qdisc) or through clsact (direct-action cls_bpf via libbpf's bpf_tc_* netlink API),
 * and XDP (native, falling back to generic with a log line). Attachments made here are
 * owned by the kernel, not by this process: they stay when the agent exits, which is
 * what lets a restart drop nothing. A replace is atomic (tcx BPF_F_REPLACE; the same
 * clsact handle and priority; XDP without UPDATE_IF_NOEXIST).
 */
import type { Logger } from "../log.ts";
import { check, EEXIST, EINVAL, ENODEV, ENOENT, toError } from "./errors.ts";
import { BpfFd } from "./fd.ts";
import { offsetOf, optsBuffer, structBuffer } from "./layout.ts";
import { lib } from "./libbpf.ts";
import { LIBBPF_CONSTANTS, LIBBPF_STRUCTS, TCX_CONSTANTS } from "./structs.ts";

export type TcDirection = "ingress" | "egress";
export type XdpMode = "native" | "generic";

/** Our filter's handle and priority on every clsact hook. */
export const TC_HANDLE = 0x7a7a;
export const TC_PRIORITY = 1;

const {
  BPF_TC_INGRESS,
  BPF_TC_EGRESS,
  BPF_TC_F_REPLACE,
  BPF_F_REPLACE,
  XDP_FLAGS_SKB_MODE,
  XDP_FLAGS_DRV_MODE,
} = LIBBPF_CONSTANTS;
const { BPF_TCX_INGRESS, BPF_TCX_EGRESS, BPF_F_BEFORE } = TCX_CONSTANTS;
const HOOK = LIBBPF_STRUCTS.bpf_tc_hook;
const TC_OPTS = LIBBPF_STRUCTS.bpf_tc_opts;
const ATTACH_OPTS = LIBBPF_STRUCTS.bpf_prog_attach_opts;
const PROG_INFO = LIBBPF_STRUCTS.bpf_prog_info;
const PROG_ID = offsetOf(TC_OPTS, "prog_id");

/** bpf_tc_query/detach: no filter (ENOENT), no clsact qdisc (EINVAL), no such interface (ENODEV). */
const TC_ABSENT = [-ENOENT, -EINVAL, -ENODEV];
/** bpf_prog_detach2 on tcx: the program is not attached there (ENOENT), or the device is gone (ENODEV). */
const TCX_ABSENT = [-ENOENT, -ENODEV];
/** More programs than any hook carries in practice; the query reports the real count. */
const TCX_QUERY_MAX = 64;
/** bpf_xdp_detach answers for a mode with nothing of ours to detach: ENOENT, or EINVAL. */
const XDP_ABSENT = [-ENOENT, -EINVAL];

function tcHook(ifindex: number, dir: TcDirection): Uint8Array {
  const h = optsBuffer(HOOK);
  h.view.setInt32(offsetOf(HOOK, "ifindex"), ifindex, true);
  h.view.setUint32(offsetOf(HOOK, "attach_point"), dir === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS, true);
  return h.bytes;
}

function tcOpts(progFd: number, flags: number): { bytes: Uint8Array; view: DataView } {
  const o = optsBuffer(TC_OPTS);
  o.view.setInt32(offsetOf(TC_OPTS, "prog_fd"), progFd, true);
  o.view.setUint32(offsetOf(TC_OPTS, "flags"), flags, true);
  o.view.setUint32(offsetOf(TC_OPTS, "handle"), TC_HANDLE, true);
  o.view.setUint32(offsetOf(TC_OPTS, "priority"), TC_PRIORITY, true);
  return o;
}

/** Attaches (or atomically replaces) our TC filter; creates the clsact qdisc if needed. */
export function tcAttach(ifindex: number, ifname: string, dir: TcDirection, progFd: number): number {
  const hook = tcHook(ifindex, dir);
  const rc = lib().bpf.bpf_tc_hook_create(hook);
  if (rc < 0 && rc !== -EEXIST) check(`create clsact on ${ifname}`, rc);
  const o = tcOpts(progFd, BPF_TC_F_REPLACE);
  check(`attach tc ${dir} program to ${ifname}`, lib().bpf.bpf_tc_attach(hook, o.bytes));
  return o.view.getUint32(PROG_ID, true);
}

/** The program id of our TC filter, or null when none is attached. */
export function tcQuery(ifindex: number, ifname: string, dir: TcDirection): number | null {
  const o = tcOpts(0, 0);
  const rc = lib().bpf.bpf_tc_query(tcHook(ifindex, dir), o.bytes);
  if (TC_ABSENT.includes(rc)) return null;
  check(`query tc ${dir} on ${ifname}`, rc);
  return o.view.getUint32(PROG_ID, true);
}

/** Removes our TC filter (other filters and the clsact qdisc stay). False when absent. */
export function tcDetach(ifindex: number, ifname: string, dir: TcDirection): boolean {
  const rc = lib().bpf.bpf_tc_detach(tcHook(ifindex, dir), tcOpts(0, 0).bytes);
  if (TC_ABSENT.includes(rc)) return false;
  check(`detach tc ${dir} from ${ifname}`, rc);
  return true;
}

const tcxType = (dir: TcDirection) => (dir === "ingress" ? BPF_TCX_INGRESS : BPF_TCX_EGRESS);

/**
 * Ids of the programs attached through tcx to this hook, in run order; null when the
 * kernel has no tcx (before 6.6 the attach type is unknown: EINVAL).
 */
export function tcxQuery(ifindex: number, ifname: string, dir: TcDirection): number[] | null {
  const ids = new Uint32Array(TCX_QUERY_MAX);
  const count = new Uint32Array([TCX_QUERY_MAX]);
  const attachFlags = new Uint32Array(1);
  const rc = lib().bpf.bpf_prog_query(ifindex, tcxType(dir), 0, attachFlags, ids, count);
  if (rc === -EINVAL) return null;
  check(`query tcx ${dir} on ${ifname}`, rc);
  return Array.from(ids.subarray(0, Math.min(count[0]!, TCX_QUERY_MAX)));
}

/** Opens the loaded program with kernel id `id` (an owned fd); null when it is gone. */
function openProgram(id: number): BpfFd | null {
  const rc = lib().bpf.bpf_prog_get_fd_by_id(id);
  if (rc === -ENOENT) return null;
  return BpfFd.own(check(`open program id ${id}`, rc), `program id ${id}`);
}

/**
 * Attaches a program to a tcx hook: in place of the program with kernel id `replaceId`
 * (atomic: one pointer swap, every packet sees the old or the new program), or else
 * first in the hook's run order. No qdisc is involved — unlike a first clsact filter:
 * creating the clsact qdisc on a device that is up deactivates the device's transmit
 * queues for an RCU grace period (qdisc_graft → dev_deactivate), and whatever it sends
 * meanwhile is dropped (SKB_DROP_REASON_QDISC_DROP; docs/reliability.md, cause 1).
 */
export function tcxAttach(
  ifindex: number,
  ifname: string,
  dir: TcDirection,
  progFd: number,
  replaceId: number | null = null,
): void {
  // a program gone meanwhile has nothing left to replace: attach first
  using replaced = replaceId === null ? null : openProgram(replaceId);
  const o = optsBuffer(ATTACH_OPTS);
  o.view.setUint32(offsetOf(ATTACH_OPTS, "flags"), replaced ? BPF_F_REPLACE : BPF_F_BEFORE, true);
  o.view.setInt32(offsetOf(ATTACH_OPTS, "replace_prog_fd"), replaced ? replaced.fd : 0, true);
  const rc = lib().bpf.bpf_prog_attach_opts(progFd, ifindex, tcxType(dir), o.bytes);
  if (rc === -EEXIST) return; // this very program is attached there already
  check(`attach tcx ${dir} program to ${ifname}`, rc);
}

/** Detaches the program with kernel id `progId` from a tcx hook; false when it is not attached there. */
export function tcxDetach(ifindex: number, ifname: string, dir: TcDirection, progId: number): boolean {
  using prog = openProgram(progId);
  if (prog === null) return false;
  const rc = lib().bpf.bpf_prog_detach2(prog.fd, ifindex, tcxType(dir));
  if (TCX_ABSENT.includes(rc)) return false;
  check(`detach tcx ${dir} program from ${ifname}`, rc);
  return true;
}

/**
 * Attaches (or atomically replaces) an XDP program. `native` falls back to generic
 * (skb) mode with a warning when the driver has no native XDP.
 */
export function xdpAttach(
  ifindex: number,
  ifname: string,
  progFd: number,
  mode: XdpMode,
  log: Logger,
): XdpMode {
  if (mode === "native") {
    const rc = lib().bpf.bpf_xdp_attach(ifindex, progFd, XDP_FLAGS_DRV_MODE, null);
    if (rc === 0) return "native";
    log.warn("native XDP not available, falling back to generic XDP (slower: copies GSO packets)", {
      iface: ifname,
      error: toError("attach native xdp", -rc).message,
    });
  }
  check(
    `attach generic xdp program to ${ifname}`,
    lib().bpf.bpf_xdp_attach(ifindex, progFd, XDP_FLAGS_SKB_MODE, null),
  );
  return "generic";
}

/** The attached XDP program's id in `mode`, or null. */
export function xdpQuery(ifindex: number, ifname: string, mode: XdpMode): number | null {
  const id = new Uint32Array(1);
  const flags = mode === "native" ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
  check(`query xdp on ${ifname}`, lib().bpf.bpf_xdp_query_id(ifindex, flags, id));
  return id[0] === 0 ? null : id[0]!;
}

/** Detaches whatever XDP program is attached in either mode. */
export function xdpDetach(ifindex: number, ifname: string): void {
  for (const flags of [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE]) {
    const rc = lib().bpf.bpf_xdp_detach(ifindex, flags, null);
    if (rc < 0 && !XDP_ABSENT.includes(rc)) throw toError(`detach xdp from ${ifname}`, -rc);
  }
}

/** The kernel id of a program or map fd (bpf_obj_get_info_by_fd; the id sits at the same offset in both infos). */
export function objectId(fd: number): number {
  const id = offsetOf(PROG_INFO, "id");
  const info = new Uint8Array(id + 4);
  const len = new Uint32Array([info.length]);
  check("get object info", lib().bpf.bpf_obj_get_info_by_fd(fd, info, len));
  return new DataView(info.buffer).getUint32(id, true);
}

/** The name of the loaded program with kernel id `id` (bpf_prog_info.name), or null when gone. */
export function programName(id: number): string | null {
  using prog = openProgram(id);
  if (prog === null) return null;
  const info = structBuffer(PROG_INFO);
  const len = new Uint32Array([info.bytes.length]);
  check(`get info of program id ${id}`, lib().bpf.bpf_obj_get_info_by_fd(prog.fd, info.bytes, len));
  const [at, size] = PROG_INFO.fields.name;
  const name = info.bytes.subarray(at, at + size);
  const end = name.indexOf(0);
  return new TextDecoder().decode(name.subarray(0, end < 0 ? size : end));
}
