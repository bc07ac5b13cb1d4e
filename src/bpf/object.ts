/**
 * A BPF object (ELF) opened from memory with libbpf, loaded into the kernel, with its
 * programs and maps found by name. Maps can be bound to a pin directory before load:
 * libbpf then reuses compatible pinned maps (their contents survive an agent restart)
 * and pins the rest. A verifier rejection becomes a BpfError carrying the verifier log.
 */
import type { Pointer } from "bun:ffi";
import type { Logger } from "../log.ts";
import { BpfError, check, toError } from "./errors.ts";
import { addr, cstr, errno, lib, setLibbpfLogger, takeLibbpfLog } from "./libbpf.ts";

export interface OpenOptions {
  /** Object name in libbpf's log lines. */
  readonly name?: string;
  /** Where libbpf's log goes. */
  readonly log?: Logger;
}

const OPEN_OPTS_SIZE = 80;
const OPEN_OPTS_NAME = 8;

/** The part of libbpf's log between its BEGIN/END PROG LOAD LOG markers, else the tail. */
export function verifierLogOf(libbpfLog: string): string {
  const m = /-- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/.exec(libbpfLog);
  if (m) return m[1]!;
  return libbpfLog.split("\n").slice(-40).join("\n");
}

export class BpfObject {
  private handle: Pointer | null;
  private loaded = false;
  /** Buffers libbpf may still point into. */
  private readonly keep: Uint8Array[] = [];

  private constructor(handle: Pointer, keep: Uint8Array[]) {
    this.handle = handle;
    this.keep = keep;
  }

  /** Parses an ELF object held in memory (nothing reaches the kernel yet). */
  static open(bytes: Uint8Array, opts: OpenOptions = {}): BpfObject {
    const l = lib();
    if (opts.log) setLibbpfLogger(opts.log);
    const name = cstr(opts.name ?? "tartan");
    const o = new Uint8Array(OPEN_OPTS_SIZE);
    const dv = new DataView(o.buffer);
    dv.setBigUint64(0, BigInt(OPEN_OPTS_SIZE), true);
    dv.setBigUint64(OPEN_OPTS_NAME, BigInt(addr(name)), true);
    const copy = new Uint8Array(bytes);
    takeLibbpfLog();
    const h = l.bpf.bpf_object__open_mem(copy, copy.length, o) as Pointer | null;
    if (!h) throw toError("open BPF object", errno() || 22, { cause: takeLibbpfLog().trim() || undefined });
    return new BpfObject(h, [copy, name]);
  }

  private get h(): Pointer {
    if (!this.handle) throw new BpfError("BPF object is closed");
    return this.handle;
  }

  private mapPtr(name: string): Pointer {
    const m = lib().bpf.bpf_object__find_map_by_name(this.h, cstr(name)) as Pointer | null;
    if (!m) throw new BpfError(`map ${name} not in the object`, { errno: 2 });
    return m;
  }

  /** Before load: reuse the map pinned at `path` if compatible, else create and pin it there. */
  setPinPath(mapName: string, path: string): void {
    const p = cstr(path);
    this.keep.push(p);
    check(`set pin path of map ${mapName}`, lib().bpf.bpf_map__set_pin_path(this.mapPtr(mapName), p));
  }

  /** Before load: use an already open map fd instead of creating the map. */
  reuseMapFd(mapName: string, fd: number): void {
    check(`reuse fd for map ${mapName}`, lib().bpf.bpf_map__reuse_fd(this.mapPtr(mapName), fd));
  }

  /** Creates the maps and loads every program; a verifier rejection carries its log. */
  load(): void {
    takeLibbpfLog();
    const rc = lib().bpf.bpf_object__load(this.h);
    const log = takeLibbpfLog();
    if (rc < 0) {
      const e = -rc;
      if (/PROG LOAD LOG|processed \d+ insns/.test(log)) {
        // the verifier refused a program (EACCES/EINVAL): not a permission problem
        const verifier = verifierLogOf(log);
        throw new BpfError("load BPF object", {
          errno: e,
          verifierLog: verifier,
          cause: `verifier: ${verifier.trim().split("\n").slice(-3).join(" | ")}`,
        });
      }
      throw toError("load BPF object", e, {
        cause: log.trim().split("\n").slice(-3).join(" | ") || undefined,
      });
    }
    this.loaded = true;
  }

  programFd(name: string): number {
    if (!this.loaded) throw new BpfError(`program ${name}: object not loaded`);
    const p = lib().bpf.bpf_object__find_program_by_name(this.h, cstr(name));
    if (!p) throw new BpfError(`program ${name} not in the object`, { errno: 2 });
    return check(`fd of program ${name}`, lib().bpf.bpf_program__fd(p));
  }

  mapFd(name: string): number {
    if (!this.loaded) throw new BpfError(`map ${name}: object not loaded`);
    return check(`fd of map ${name}`, lib().bpf.bpf_map__fd(this.mapPtr(name)));
  }

  /** Closes libbpf's fds; attached programs and pinned maps stay in the kernel. */
  close(): void {
    if (this.handle) lib().bpf.bpf_object__close(this.handle);
    this.handle = null;
    this.keep.length = 0;
  }
}
