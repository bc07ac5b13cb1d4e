/**
 * libbpf.so.1 and the few libc functions the loader needs, opened once through
 * bun:ffi. `lib()` returns the symbol table; when libbpf cannot be opened it throws a
 * BpfUnavailableError saying what to install. Every libbpf function declared here
 * reports failure in its return value (-errno; NULL only from name lookups, whose one
 * cause is "not found"), so errno is never read after the fact. libbpf's log lines go
 * to the Logger set with `setLibbpfLogger` (a JSCallback formats them with libc's
 * vsnprintf), and the last lines are kept so a verifier rejection can carry its log.
 */
import { dlopen, FFIType, JSCallback, type Pointer, ptr } from "bun:ffi";
import type { Logger } from "../log.ts";
import { BpfUnavailableError } from "./errors.ts";

const { i32, u32, u64, ptr: P, void: V } = FFIType;
const usize = u64;

const LIBBPF_SYMBOLS = {
  libbpf_set_print: { args: [P], returns: P },
  libbpf_num_possible_cpus: { args: [], returns: i32 },
  bpf_object__open_skeleton: { args: [P, P], returns: i32 },
  bpf_object__load: { args: [P], returns: i32 },
  bpf_object__close: { args: [P], returns: V },
  bpf_object__find_program_by_name: { args: [P, P], returns: P },
  bpf_object__find_map_by_name: { args: [P, P], returns: P },
  bpf_program__fd: { args: [P], returns: i32 },
  bpf_map__fd: { args: [P], returns: i32 },
  bpf_map__set_pin_path: { args: [P, P], returns: i32 },
  bpf_map_lookup_elem: { args: [i32, P, P], returns: i32 },
  bpf_map_update_elem: { args: [i32, P, P, u64], returns: i32 },
  bpf_map_delete_elem: { args: [i32, P], returns: i32 },
  bpf_map_get_next_key: { args: [i32, P, P], returns: i32 },
  bpf_map_update_batch: { args: [i32, P, P, P, P], returns: i32 },
  bpf_map_delete_batch: { args: [i32, P, P, P], returns: i32 },
  bpf_obj_pin: { args: [i32, P], returns: i32 },
  bpf_obj_get: { args: [P], returns: i32 },
  bpf_obj_get_info_by_fd: { args: [i32, P, P], returns: i32 },
  bpf_prog_get_fd_by_id: { args: [u32], returns: i32 },
  bpf_tc_hook_create: { args: [P], returns: i32 },
  bpf_tc_attach: { args: [P, P], returns: i32 },
  bpf_tc_detach: { args: [P, P], returns: i32 },
  bpf_tc_query: { args: [P, P], returns: i32 },
  bpf_prog_attach_opts: { args: [i32, i32, u32, P], returns: i32 },
  bpf_prog_detach2: { args: [i32, i32, u32], returns: i32 },
  bpf_prog_query: { args: [i32, u32, u32, P, P, P], returns: i32 },
  bpf_xdp_attach: { args: [i32, i32, u32, P], returns: i32 },
  bpf_xdp_detach: { args: [i32, u32, P], returns: i32 },
  bpf_xdp_query_id: { args: [i32, i32, P], returns: i32 },
  bpf_prog_test_run_opts: { args: [i32, P], returns: i32 },
} as const;

const LIBC_SYMBOLS = {
  close: { args: [i32], returns: i32 },
  vsnprintf: { args: [P, usize, P, P], returns: i32 },
} as const;

function open() {
  let bpf: ReturnType<typeof dlopen<typeof LIBBPF_SYMBOLS>>;
  try {
    bpf = dlopen("libbpf.so.1", LIBBPF_SYMBOLS);
  } catch (e) {
    throw new BpfUnavailableError(
      "cannot load libbpf.so.1: install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1; Fedora: dnf install libbpf)",
      e,
    );
  }
  const libc = dlopen("libc.so.6", LIBC_SYMBOLS);
  return { bpf: bpf.symbols, libc: libc.symbols };
}

type Lib = ReturnType<typeof open>;
let loaded: Lib | null = null;

/** The opened libraries; throws BpfUnavailableError when libbpf.so.1 is missing. */
export function lib(): Lib {
  if (!loaded) {
    loaded = open();
    installPrinter(loaded);
  }
  return loaded;
}

/** A NUL-terminated C string in a buffer that must outlive the call. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** Address of a buffer, for structs that hold pointers. */
export function addr(buf: Uint8Array): number {
  return ptr(buf) as unknown as number;
}

let logger: Logger | null = null;
const recent: string[] = [];
const RECENT_MAX = 400;
let printer: JSCallback | null = null;
const LEVELS = ["warn", "info", "debug"] as const;

/** Route libbpf's log to `log` (warn → warn, info → debug, debug → dropped). */
export function setLibbpfLogger(log: Logger | null): void {
  logger = log;
}

/** Lines libbpf printed since the last `takeLibbpfLog()` (a verifier log among them). */
export function takeLibbpfLog(): string {
  const text = recent.join("");
  recent.length = 0;
  return text;
}

function installPrinter(l: Lib): void {
  const buf = new Uint8Array(8192);
  printer = new JSCallback(
    (level: number, fmt: Pointer, args: Pointer) => {
      const n = l.libc.vsnprintf(buf, buf.length, fmt, args);
      const text = Buffer.from(buf.subarray(0, Math.min(Math.max(n, 0), buf.length - 1))).toString("utf8");
      recent.push(text);
      if (recent.length > RECENT_MAX) recent.splice(0, recent.length - RECENT_MAX);
      const lvl = LEVELS[level] ?? "debug";
      const line = text.trimEnd();
      if (logger && line && lvl !== "debug") {
        if (lvl === "warn") logger.warn("libbpf", { line });
        else logger.debug("libbpf", { line });
      }
      return 0;
    },
    { args: [i32, P, P], returns: i32 },
  );
  l.bpf.libbpf_set_print(printer.ptr);
}

/** close(2); BpfFd is the one caller in src/ (it knows which fds are ours to close). */
export function closeFd(fd: number): void {
  if (fd >= 0) lib().libc.close(fd);
}

let cpus = 0;
/** Possible CPUs: the per-CPU value count of per-CPU maps. */
export function possibleCpus(): number {
  if (cpus === 0) cpus = lib().bpf.libbpf_num_possible_cpus();
  return cpus;
}
