/**
 * Attaching programs to interfaces: TC (clsact ingress/egress, direct-action cls_bpf
 * through libbpf's bpf_tc_* netlink API) and XDP (native, falling back to generic
 * with a log line). Attachments made here are owned by the kernel, not by this
 * process: they stay when the agent exits, which is what lets a restart drop nothing.
 * A replace is atomic (same handle and priority, or XDP without UPDATE_IF_NOEXIST).
 */
import type { Logger } from "../log.ts";
import { BpfError, check, EEXIST, ENOENT, toError } from "./errors.ts";
import { closeFd, lib } from "./libbpf.ts";

export type TcDirection = "ingress" | "egress";
export type XdpMode = "native" | "generic";

/** Our filter's handle and priority on every clsact hook. */
export const TC_HANDLE = 0x7a7a;
export const TC_PRIORITY = 1;

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const XDP_FLAGS_SKB_MODE = 1 << 1;
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
  const rc = lib().bpf.bpf_tc_hook_create(hook);
  if (rc < 0 && rc !== -EEXIST) check(`create clsact on ${ifname}`, rc);
  const o = tcOpts(progFd, BPF_TC_F_REPLACE);
  check(`attach tc ${dir} program to ${ifname}`, lib().bpf.bpf_tc_attach(hook, o.bytes));
  return o.view.getUint32(16, true);
}

/** The program id of our TC filter, or null when none is attached. */
export function tcQuery(ifindex: number, ifname: string, dir: TcDirection): number | null {
  const o = tcOpts(0, 0);
  const rc = lib().bpf.bpf_tc_query(tcHook(ifindex, dir), o.bytes);
  if (rc === -ENOENT || rc === -22 || rc === -19) return null;
  check(`query tc ${dir} on ${ifname}`, rc);
  return o.view.getUint32(16, true);
}

/** Removes our TC filter (other filters and the clsact qdisc stay). False when absent. */
export function tcDetach(ifindex: number, ifname: string, dir: TcDirection): boolean {
  const rc = lib().bpf.bpf_tc_detach(tcHook(ifindex, dir), tcOpts(0, 0).bytes);
  if (rc === -ENOENT || rc === -22 || rc === -19) return false;
  check(`detach tc ${dir} from ${ifname}`, rc);
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
