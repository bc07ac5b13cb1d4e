/**
 * The libbpf and kernel structs and flag values the FFI writes and reads by hand:
 * libbpf's option structs (bpf_tc_hook, bpf_tc_opts, bpf_prog_attach_opts,
 * bpf_test_run_opts, bpf_object_skeleton, bpf_map_create_opts), the kernel's object
 * info structs and __sk_buff. Layouts are those of libbpf 1.1's and Linux 6.1's uapi
 * headers (/usr/include/bpf, /usr/include/linux): test/bpf/abi.test.ts compiles a probe
 * against those headers and checks every entry here. Only the fields the loader
 * uses are listed. bpf_map_batch_opts is not here: the loader passes NULL for it.
 * TCX_CONSTANTS are newer than those headers (Linux 6.6): the ABI test checks the
 * attach types against the running kernel's BTF, and test/bpf/loader.test.ts checks
 * BPF_F_BEFORE by what it does.
 */
import type { Layout } from "./layout.ts";

export const LIBBPF_STRUCTS = {
  bpf_tc_hook: {
    size: 24,
    fields: { sz: [0, 8], ifindex: [8, 4], attach_point: [12, 4], parent: [16, 4] },
  },
  bpf_tc_opts: {
    size: 32,
    fields: {
      sz: [0, 8],
      prog_fd: [8, 4],
      flags: [12, 4],
      prog_id: [16, 4],
      handle: [20, 4],
      priority: [24, 4],
    },
  },
  bpf_test_run_opts: {
    size: 80,
    fields: {
      sz: [0, 8],
      data_in: [8, 8],
      data_out: [16, 8],
      data_size_in: [24, 4],
      data_size_out: [28, 4],
      ctx_in: [32, 8],
      ctx_out: [40, 8],
      ctx_size_in: [48, 4],
      ctx_size_out: [52, 4],
      retval: [56, 4],
      repeat: [60, 4],
      duration: [64, 4],
    },
  },
  /** Opening through the skeleton API: the one libbpf open that returns -errno itself. */
  bpf_object_skeleton: {
    size: 72,
    fields: {
      sz: [0, 8],
      name: [8, 8],
      data: [16, 8],
      data_sz: [24, 8],
      obj: [32, 8],
      map_cnt: [40, 4],
      map_skel_sz: [44, 4],
      maps: [48, 8],
      prog_cnt: [56, 4],
      prog_skel_sz: [60, 4],
      progs: [64, 8],
    },
  },
  /** BPF_PROG_ATTACH through libbpf (tcx); libbpf 1.1 has no relative_fd/id: BPF_F_BEFORE alone means "first". */
  bpf_prog_attach_opts: { size: 16, fields: { sz: [0, 8], flags: [8, 4], replace_prog_fd: [12, 4] } },
  bpf_map_create_opts: { size: 48, fields: { sz: [0, 8], map_flags: [28, 4] } },
  /** bpf_obj_get_info_by_fd on a program; the kernel fills as much as the buffer holds. */
  bpf_prog_info: { size: 232, fields: { id: [4, 4], name: [64, 16] } },
  bpf_map_info: { size: 88, fields: { id: [4, 4] } },
  /** The context a TC program gets, as BPF_PROG_TEST_RUN takes it in ctx_in. */
  __sk_buff: {
    size: 192,
    fields: { ingress_ifindex: [36, 4], ifindex: [40, 4], gso_segs: [164, 4], gso_size: [176, 4] },
  },
} as const satisfies Record<string, Layout>;

/** Flag and enum values passed to libbpf, under their C names. */
export const LIBBPF_CONSTANTS = {
  BPF_ANY: 0,
  BPF_NOEXIST: 1,
  BPF_EXIST: 2,
  BPF_TC_INGRESS: 1,
  BPF_TC_EGRESS: 2,
  BPF_TC_F_REPLACE: 1,
  /** BPF_PROG_ATTACH's flag (not bpf_tc_opts'): replace the program given by replace_prog_fd. */
  BPF_F_REPLACE: 4,
  XDP_FLAGS_SKB_MODE: 2,
  XDP_FLAGS_DRV_MODE: 4,
} as const;

/**
 * tcx (Linux 6.6+: BPF programs on a device's ingress and egress without a qdisc), from
 * <linux/bpf.h> of 6.6, newer than the installed uapi headers: enum bpf_attach_type's
 * tcx hooks and the BPF_PROG_ATTACH flag that puts a program first in the hook's run
 * order (with no relative program given).
 */
export const TCX_CONSTANTS = {
  BPF_TCX_INGRESS: 46,
  BPF_TCX_EGRESS: 47,
  BPF_F_BEFORE: 8,
} as const;
