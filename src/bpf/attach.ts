/**
 * Attaching programs to interfaces: TC through tcx (kernel 6.6+, BPF_PROG_ATTACH; no
 * qdisc) or through clsact (direct-action cls_bpf via libbpf's bpf_tc_* netlink API),
 * and XDP (native, falling back to generic with a log line). Attachments made here are
 * owned by the kernel, not by this process: they stay when the agent exits, which is
 * what lets a restart drop nothing. A replace is atomic (tcx BPF_F_REPLACE; the same
 * clsact handle and priority; XDP without UPDATE_IF_NOEXIST).
 */
import type { Logger } from "../log.ts";
import { BpfError, check, EEXIST, EINVAL, ENOENT, toError } from "./errors.ts";
import { closeFd, lib, quietly } from "./libbpf.ts";

export type TcDirection = "ingress" | "egress";
export type XdpMode = "native" | "generic";

/** Our filter's handle and priority on every clsact hook. */
export const TC_HANDLE = 0x7a7a;
export const TC_PRIORITY = 1;

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const XDP_FLAGS_SKB_MODE = 1 << 1;
const BPF_TCX_INGRESS = 46;
const BPF_TCX_EGRESS = 47;
/** BPF_PROG_ATTACH flags (not the bpf_tc_* ones above). */
const BPF_F_REPLACE_PROG = 1 << 2;
const BPF_F_BEFORE = 1 << 3;
/** More programs than any hook carries in practice; the query reports the real count. */
const TCX_QUERY_MAX = 64;
const XDP_FLAGS_DRV_MODE = 1 << 2;

function tcHook(ifindex: number, dir: TcDirection): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, 24n, true);
  v.setInt32(8, ifindex, true);
  v.setUint32(12, dir === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS, true);
  return b;
}

function tcOpts(progFd: number, flags: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 32n, true);
  view.setInt32(8, progFd, true);
  view.setUint32(12, flags, true);
  view.setUint32(20, TC_HANDLE, true);
  view.setUint32(24, TC_PRIORITY, true);
  return { bytes, view };
}

/** Attaches (or atomically replaces) our TC filter; creates the clsact qdisc if needed. */
export function tcAttach(ifindex: number, ifname: string, dir: TcDirection, progFd: number): number {
  const hook = tcHook(ifindex, dir);
  // EEXIST (the qdisc is there) is the usual answer: not worth libbpf's warning line
  const rc = quietly(() => lib().bpf.bpf_tc_hook_create(hook));
  if (rc < 0 && rc !== -EEXIST) check(`create clsact on ${ifname}`, rc);
  const o = tcOpts(progFd, BPF_TC_F_REPLACE);
  check(`attach tc ${dir} program to ${ifname}`, lib().bpf.bpf_tc_attach(hook, o.bytes));
  return o.view.getUint32(16, true);
}

/** The program id of our TC filter, or null when none is attached. */
export function tcQuery(ifindex: number, ifname: string, dir: TcDirection): number | null {
  const o = tcOpts(0, 0);
  const rc = quietly(() => lib().bpf.bpf_tc_query(tcHook(ifindex, dir), o.bytes));
  if (rc === -ENOENT || rc === -22 || rc === -19) return null;
  check(`query tc ${dir} on ${ifname}`, rc);
  return o.view.getUint32(16, true);
}

/** Removes our TC filter (other filters and the clsact qdisc stay). False when absent. */
export function tcDetach(ifindex: number, ifname: string, dir: TcDirection): boolean {
  const rc = quietly(() => lib().bpf.bpf_tc_detach(tcHook(ifindex, dir), tcOpts(0, 0).bytes));
  if (rc === -ENOENT || rc === -22 || rc === -19) return false;
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
  const flags = new Uint32Array(1);
  const rc = lib().bpf.bpf_prog_query(ifindex, tcxType(dir), 0, flags, ids, count);
  if (rc === -EINVAL) return null;
  check(`query tcx ${dir} on ${ifname}`, rc);
  return Array.from(ids.subarray(0, Math.min(count[0]!, TCX_QUERY_MAX)));
}

/**
 * Attaches a program to a tcx hook: in place of the program with id `replaceId`
 * (atomic: one pointer swap, every packet sees the old or the new program), or else
 * first in the hook's run order. No qdisc is involved — unlike a first clsact filter:
 * creating the clsact qdisc on a device that is up deactivates the device's transmit
 * queues for an RCU grace period (qdisc_graft → dev_deactivate), and whatever it sends
 * meanwhile is dropped (SKB_DROP_REASON_QDISC_DROP; docs/reliability.md, finding 9).
 */
export function tcxAttach(
  ifindex: number,
  ifname: string,
  dir: TcDirection,
  progFd: number,
  replaceId: number | null = null,
): void {
  const replaceFd = replaceId === null ? -1 : lib().bpf.bpf_prog_get_fd_by_id(replaceId);
  if (replaceId !== null) check(`open program id ${replaceId} to replace on ${ifname}`, replaceFd);
  try {
    // struct bpf_prog_attach_opts { size_t sz; __u32 flags; int replace_prog_fd; }
    const opts = new Uint8Array(16);
    const v = new DataView(opts.buffer);
    v.setBigUint64(0, 16n, true);
    v.setUint32(8, replaceId === null ? BPF_F_BEFORE : BPF_F_REPLACE_PROG, true);
    v.setInt32(12, replaceId === null ? 0 : replaceFd, true);
    const rc = lib().bpf.bpf_prog_attach_opts(progFd, ifindex, tcxType(dir), opts);
    if (rc === -EEXIST) return; // this very program is attached there already
    check(`attach tcx ${dir} program to ${ifname}`, rc);
  } finally {
    closeFd(replaceFd);
  }
}

/** Detaches the program with id `progId` from a tcx hook; false when it is not attached. */
export function tcxDetach(ifindex: number, ifname: string, dir: TcDirection, progId: number): boolean {
  const fd = lib().bpf.bpf_prog_get_fd_by_id(progId);
  if (fd === -ENOENT) return false;
  check(`open program id ${progId}`, fd);
  try {
    const rc = lib().bpf.bpf_prog_detach2(fd, ifindex, tcxType(dir));
    if (rc === -ENOENT || rc === -19) return false;
    check(`detach tcx ${dir} program from ${ifname}`, rc);
    return true;
  } finally {
    closeFd(fd);
  }
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
    if (rc < 0 && rc !== -ENOENT && rc !== -22)
      throw new BpfError(`detach xdp from ${ifname}`, { errno: -rc });
  }
}

/** The kernel id of a program or map fd (bpf_obj_get_info_by_fd; id is at offset 4 of both infos). */
export function objectId(fd: number): number {
  const info = new Uint8Array(8);
  const len = new Uint32Array([8]);
  check("get object info", lib().bpf.bpf_obj_get_info_by_fd(fd, info, len));
  return new DataView(info.buffer).getUint32(4, true);
}

/** The name of the loaded program with kernel id `id` (bpf_prog_info.name), or null when gone. */
export function programName(id: number): string | null {
  const fd = lib().bpf.bpf_prog_get_fd_by_id(id);
  if (fd === -ENOENT) return null;
  check(`open program id ${id}`, fd);
  try {
    const info = new Uint8Array(80);
    const len = new Uint32Array([80]);
    check(`get info of program id ${id}`, lib().bpf.bpf_obj_get_info_by_fd(fd, info, len));
    const name = info.subarray(64, 80);
    const end = name.indexOf(0);
    return new TextDecoder().decode(name.subarray(0, end < 0 ? 16 : end));
  } finally {
    closeFd(fd);
  }
}
